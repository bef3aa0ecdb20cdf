"""The device's owner thread and its jobs: deadlines, cancels, close, idle work."""

from __future__ import annotations

import threading
import time

import pytest

from kiosk.drivers.worker import RESULT_GRACE_S, DeviceWorker, Job
from kiosk.errors import CaptureCancelled, CaptureTimeout, DeviceClosed


@pytest.fixture
def worker():
    made = DeviceWorker("test-device")
    yield made
    made.close()


def names() -> list[str]:
    return [thread.name for thread in threading.enumerate()]


def test_jobs_run_one_at_a_time_on_one_named_thread(worker):
    seen = []
    jobs = [
        worker.submit(
            lambda job, n=n: seen.append((n, threading.current_thread().name)) or n,
            deadline_s=1.0,
            name=f"job {n}",
        )
        for n in range(5)
    ]
    assert [job.result() for job in jobs] == list(range(5))
    assert seen == [(n, "test-device") for n in range(5)]
    assert names().count("test-device") == 1


def test_work_that_ignores_its_deadline_still_returns_at_the_deadline(worker):
    blocked = threading.Event()
    job = worker.submit(lambda job: blocked.wait(5.0), deadline_s=0.2, name="stuck")
    start = time.monotonic()
    with pytest.raises(CaptureTimeout, match="stuck"):
        job.result()
    assert time.monotonic() - start < 0.2 + RESULT_GRACE_S + 0.2
    assert job.cancelled  # the work is told, at its next check
    blocked.set()


def test_work_that_checks_ends_with_a_timeout_of_its_own(worker):
    def polls(job: Job) -> None:
        while True:
            job.sleep(0.01)

    start = time.monotonic()
    with pytest.raises(CaptureTimeout):
        worker.submit(polls, deadline_s=0.2, name="poll").result()
    assert time.monotonic() - start < 0.5


def test_a_cancel_reaches_running_work_at_once(worker):
    job = worker.submit(lambda job: job.sleep(5.0), deadline_s=10.0, name="wait")
    time.sleep(0.05)
    start = time.monotonic()
    job.cancel()
    with pytest.raises(CaptureCancelled):
        job.result()
    assert time.monotonic() - start < 0.2


def test_a_queued_job_cancelled_finishes_at_once_and_never_runs(worker):
    ran = []
    first = worker.submit(lambda job: job.sleep(0.5), deadline_s=2.0, name="first")
    second = worker.submit(lambda job: ran.append(True), deadline_s=2.0, name="second")
    second.cancel()
    assert second.done()
    with pytest.raises(CaptureCancelled):
        second.result(timeout=0.01)
    first.result()
    time.sleep(0.05)
    assert ran == []


def test_done_callbacks_run_once_with_the_job_even_when_added_late(worker):
    calls = []
    job = worker.submit(lambda job: 42, deadline_s=1.0, name="answer")
    job.add_done_callback(calls.append)
    assert job.result() == 42
    job.add_done_callback(calls.append)  # already done: runs at once
    assert calls == [job, job]


def test_a_failing_callback_does_not_stop_the_thread(worker):
    job = worker.submit(lambda job: 1, deadline_s=1.0, name="one")
    job.add_done_callback(lambda _job: 1 / 0)
    job.result()
    assert worker.submit(lambda job: 2, deadline_s=1.0, name="two").result() == 2


def test_close_cancels_everything_and_joins_the_thread():
    worker = DeviceWorker("closing-device")
    running = worker.submit(lambda job: job.sleep(5.0), deadline_s=10.0, name="running")
    queued = worker.submit(lambda job: 1, deadline_s=10.0, name="queued")
    time.sleep(0.05)
    assert worker.close()
    for job in (running, queued):
        with pytest.raises(CaptureCancelled):
            job.result(timeout=0.01)
    assert "closing-device" not in names()
    with pytest.raises(DeviceClosed):
        worker.submit(lambda job: 1, deadline_s=1.0, name="late")


def test_idle_work_runs_only_while_idling_and_between_jobs():
    frames = []
    worker = DeviceWorker("camera-like", idle=lambda: frames.append(1) or time.sleep(0.01))
    worker.start()
    time.sleep(0.1)
    assert frames == []  # off until switched on
    worker.set_idling(True)
    time.sleep(0.1)
    assert len(frames) > 3
    assert worker.submit(lambda job: "still", deadline_s=1.0, name="still").result() == "still"
    worker.set_idling(False)
    time.sleep(0.05)
    count = len(frames)
    time.sleep(0.1)
    assert len(frames) == count
    worker.close()


def test_a_failing_idle_is_logged_and_backs_off(caplog):
    calls = []

    def broken() -> None:
        calls.append(1)
        raise OSError("no frame")

    worker = DeviceWorker("broken-camera", idle=broken)
    worker.set_idling(True)
    worker.start()
    time.sleep(0.3)
    worker.close()
    assert len(calls) == 1  # backed off a second, not spinning
    assert "idle work of broken-camera failed" in caplog.text


def test_a_job_needs_a_positive_deadline(worker):
    with pytest.raises(ValueError, match="positive deadline"):
        worker.submit(lambda job: 1, deadline_s=0, name="now")
