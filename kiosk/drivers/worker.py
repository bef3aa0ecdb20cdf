"""One owner thread per device: every call to it is a job with a deadline and a cancel.

In the manner of picamera2's ``Job`` and gpiozero's ``threads.py``: the thread
is named, stoppable and joined at close; a call is a future the caller waits on
(``job.result()``), bounded by the job's deadline; cancelling a job, or closing
the worker, makes the running work stop at its next ``job.check()`` and fails
every queued job at once, so nothing waits on a device that is gone::

    worker = DeviceWorker("fingerprint-zhiantec")
    job = worker.submit(read_one_finger, deadline_s=12.0, name="capture")
    capture = job.result()  # CaptureTimeout after 12 s, CaptureCancelled if cancelled
    worker.close()          # cancels what is left and joins the thread

Work functions take the job as their argument and call ``job.check()`` (or
``job.sleep(s)``) between short blocking steps; that is how a cancel or the
deadline reaches them. A step that blocks without a timeout of its own (a
vendor call) is unblocked by closing the device from another thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kiosk.errors import CaptureCancelled, CaptureTimeout, DeviceClosed

log = logging.getLogger(__name__)

T = TypeVar("T")

RESULT_GRACE_S = 0.5  # past the deadline, the work may still report a more precise error
JOIN_TIMEOUT_S = 3.0


class Deadline:
    """A time limit and a cancel, for work that checks them between short blocking
    steps. A Job is one; a driver's work outside a job (its ``_open``) makes one
    with the event its ``_close`` sets."""

    def __init__(self, name: str, seconds: float, cancelled: threading.Event | None = None) -> None:
        if not seconds > 0:
            raise ValueError(f"{name!r} needs a positive deadline, got {seconds!r} s")
        self.name = name
        self.deadline_s = seconds
        self.deadline = time.monotonic() + seconds
        self._cancelled = cancelled if cancelled is not None else threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise CaptureCancelled or CaptureTimeout if the work must stop now."""
        if self._cancelled.is_set():
            raise CaptureCancelled(f"{self.name}: cancelled")
        if time.monotonic() >= self.deadline:
            raise CaptureTimeout(f"{self.name}: no answer within {self.deadline_s:g} s")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once for a cancel; then :meth:`check`."""
        self._cancelled.wait(max(0.0, min(seconds, self.remaining())))
        self.check()


class Job(Deadline, Generic[T]):
    """A call to a device: a future with a deadline and a cancel.

    Callbacks added with :meth:`add_done_callback` run on the device's thread
    (or at once, on the caller's, if the job is already done).
    """

    def __init__(self, work: Callable[[Job[T]], T], deadline_s: float, name: str) -> None:
        super().__init__(name, deadline_s)
        self._work = work
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._started = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Job[T]], None]] = []

    def __repr__(self) -> str:
        state = "done" if self.done() else "cancelled" if self.cancelled else "pending"
        return f"<Job {self.name!r} {state}>"

    # -- for the caller ---------------------------------------------------------

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the work to stop; a job that has not started finishes at once."""
        self._cancelled.set()
        with self._lock:
            started = self._started
        if not started:
            self._finish(None, CaptureCancelled(f"{self.name}: cancelled before it started"))

    def result(self, timeout: float | None = None) -> T:
        """Wait for the outcome: the work's value, or its exception.

        Waits at most ``timeout`` s, and never much past the job's deadline:
        then the job is cancelled and CaptureTimeout raised. Raises
        CaptureCancelled if the job was cancelled before it finished.
        """
        limit = self.remaining() + RESULT_GRACE_S
        if timeout is not None:
            limit = min(limit, timeout)
        if not self._done.wait(limit):
            self.cancel()
            raise CaptureTimeout(f"{self.name}: no answer within {self.deadline_s:g} s")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        """The error the job finished with (None while running or on success)."""
        return self._error if self.done() else None

    def add_done_callback(self, callback: Callable[[Job[T]], None]) -> None:
        with self._lock:
            if not self.done():
                self._callbacks.append(callback)
                return
        callback(self)

    # -- for the worker ---------------------------------------------------------

    def _run(self) -> None:
        with self._lock:
            if self.done():
                return  # cancelled while queued
            self._started = True
        try:
            self.check()
            self._finish(self._work(self), None)
        except BaseException as exc:  # the caller gets it from result()
            self._finish(None, exc)

    def _finish(self, result: T | None, error: BaseException | None) -> None:
        with self._lock:
            if self.done():
                return
            self._result, self._error = result, error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # one bad listener must not stop the device's thread
                log.exception("callback of job %r failed", self.name)


class DeviceWorker:
    """The thread that owns one device, running its jobs one at a time.

    ``idle``, if given, is called again and again while no job waits (a camera
    grabs its next preview frame there); it must return within a frame or so
    and must not raise (an exception is logged and idling backs off a second).
    The thread starts with the first job (or :meth:`start`) and is joined by
    :meth:`close`.
    """

    def __init__(self, name: str, idle: Callable[[], Any] | None = None) -> None:
        self.name = name
        self._idle = idle
        self._queue: collections.deque[Job[Any]] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: Job[Any] | None = None
        self._idling = False  # set_idling(True) turns it on (a camera starting its preview)

    @property
    def closed(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        with self._wake:
            if self._stopping.is_set():
                raise DeviceClosed(f"{self.name}: the device's thread was stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def set_idling(self, idling: bool) -> None:
        """Turn the idle work (a preview stream) on or off."""
        with self._wake:
            self._idling = idling and self._idle is not None
            self._wake.notify()

    def submit(self, work: Callable[[Job[T]], T], *, deadline_s: float, name: str) -> Job[T]:
        """Queue ``work(job)`` on the device's thread; returns the job at once."""
        job = Job(work, deadline_s, name)
        self.start()
        with self._wake:
            self._queue.append(job)
            self._wake.notify()
        return job

    def cancel_all(self) -> None:
        """Cancel the running job and fail every queued one (picamera2's flush)."""
        with self._wake:
            queued, self._queue = list(self._queue), collections.deque()
            running = self._running
        if running is not None:
            running.cancel()
        for job in queued:
            job.cancel()

    def close(self, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Stop the thread: cancel every job, then join. False if it would not stop
        in ``timeout`` s (blocked in a vendor call: close the device to free it)."""
        self._stopping.set()
        self.cancel_all()
        with self._wake:
            self._wake.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.error("thread %s did not stop within %s s", self.name, timeout)
            return False
        return True

    def _next(self) -> Job[Any] | None:
        with self._wake:
            while not self._queue and not self._stopping.is_set() and not self._idling:
                self._wake.wait()
            if self._stopping.is_set():
                return None
            if self._queue:
                self._running = self._queue.popleft()
                return self._running
            return None  # idle work to do

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self._next()
            if job is not None:
                job._run()
                with self._wake:
                    self._running = None
            elif not self._stopping.is_set() and self._idle is not None:
                try:
                    self._idle()
                except Exception:
                    log.exception("idle work of %s failed", self.name)
                    self._stopping.wait(1.0)
        for job in list(self._queue):  # submitted while stopping
            job._finish(None, CaptureCancelled(f"{job.name}: the device was closed"))
