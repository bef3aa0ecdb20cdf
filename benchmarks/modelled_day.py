"""A modelled day at one kiosk: minutes per citizen and citizens per 8-hour day.

The device and software time is measured. Each citizen goes through the real
``EnrollmentFlow`` with the real ``ZhiantecReader`` talking to a
``SensorEmulator`` on a pseudo-terminal that sends its bytes at the real baud
rate (``pace=True``): at 57,600 baud (as an R307 is delivered) and at 115,200
(the driver's ``fast_baudrate`` switch), with the ``FakeCamera`` and the
``FakeSignaturePad``, saving into a real ``EnrollmentStore``. A hand on the
emulator places each finger the moment the reader waits for it and lifts it at
LIFT, so the measured time holds no human time. One capture in ``--poor-every``
(default 10) is a poor print that the quality check refuses, so that finger is
taken again, as happens with real fingers.

The citizen's own time is modelled (the table below) and added where it does
not overlap device time. Reading is timed by the words the screen shows (the
Indonesian texts in ``kiosk/i18n/id``, counted when the script runs) at 150
words a minute.

=========================  ======================  ========  ======
what the citizen does      seconds                 overlaps  source
=========================  ======================  ========  ======
walk up from the queue     10                      adds      [1]
read a screen              its words at 150 wpm    adds      [2]
tap a button               1.5 each                adds      [3]
find the family card (KK)  5                       adds      [3]
type the 16-digit NIK      16 x 1.0                adds      [4]
check the NIK typed        3                       adds      [3]
stand still for the photo  4                       adds      [5]
place a finger             4 each                  adds      [6]
hold it still: imaging     0.3 each (device time)  adds      [7]
lift the finger            0.5                     hidden    [8]
screen's pause after a     0.5                     hidden    [9]
good finger
a finger taken again       the hint read + 4 + 0.3 adds      [10]
sign with a finger         6                       adds      [11]
look over the review       8                       adds      [3]
take the receipt           5                       adds      [3]
=========================  ======================  ========  ======

1. Estimate: 5 to 10 m from the waiting seats at 0.8 to 1.4 m/s (preferred
   walking speed is about 1.4 m/s; people over 65 in the Health Survey for
   England walked 0.8 to 0.9 m/s, Asher et al., UCL 2012), plus putting a bag
   down.
2. Brysbaert, "How many words do we read per minute?", J. Memory and Language
   2019 (190 studies): adults read English non-fiction silently at 238 words a
   minute, most at 175 to 300, more slowly when older or in a second language.
   150 is our estimate, below that range, for a public of every age reading an
   official text. The words are those the kiosk shows (kiosk/i18n/id), counted
   when the script runs.
3. Estimate; no measured figure found.
4. Estimate between measured extremes: MacKenzie & Zhang 2001 (soft keyboard,
   familiar layout, 20 wpm: 0.6 s a character; walk-up on an unfamiliar
   layout, 5.4 wpm: 2.2 s) and Nicolau & Jorge 2012 (people aged 67 to 89 on a
   tablet, 5.1 wpm: 2.4 s). A 3 x 4 digit pad is familiar from phones and
   ATMs; the second includes looking back at the card.
5. Estimate: step into the frame, take off a cap or glasses. The camera takes
   the photo by itself once the face check passes.
6. Estimate, from the screen naming the finger to the finger on the glass
   (a glance at the finger's name and picture included).
   For scale: in NIST's self-capture study (Choong, Theofanos & Guan 2012) ten
   prints on a four-finger scanner took about 1.5 min in 4 placements with
   on-screen feedback; one finger on a 14 x 18 mm window needs less
   positioning, but 10 placements.
7. Device time the emulator does not spend (it images at once): the R307
   datasheet gives an image input time under 0.3 s (AS608 sellers: under 1 s).
8. Estimate. The screen says "lift" as soon as the image is read; the lift
   happens while the image crosses the UART, which takes seconds.
9. ``FingerprintsScreen.pause_after_success_s``: the next finger is named at
   once, so the hand is already moving during the pause.
10. The hint (``quality.finger.too_small``) read, the finger placed and imaged
    again; the screen's 0.6 s pause after a problem passes while reading.
11. Estimate: a few seconds of writing and finding the box; no measured
    duration of signatures found.

As a check on the sum: in 2011 the Home Affairs ministry's demonstration of
operator-led e-KTP recording (photo, signature, fingerprints, iris) took 2 min
11 s per person (Kompas, 23 Nov 2011); citizens reported 3 to 5 min at a
kecamatan (2012 blog posts), and Sidoarjo regency's information blog (2012)
5 to 10 min per person.

Not in the model: a citizen who needs the operator (a missing finger, a
minor), breaks, a queue that runs dry, the operator's work. The day is 8
hours of citizens back to back at one kiosk; the goal is 200 a day (2.4 min
each).

    python benchmarks/modelled_day.py                     # 2 citizens at each speed
    python benchmarks/modelled_day.py --citizens 5 --baud 115200
    python benchmarks/modelled_day.py --poor-every 0      # every print good the first time

The two speeds run side by side (each its own emulator, reader, flow and
store) so that a default run stays under 3 minutes; ``--one-at-a-time`` runs
them one after the other.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from figures import machine_line, throwaway_sealer

import kiosk
from kiosk.drivers.base import FingerPhase
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.emulator import SensorEmulator
from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.errors import KioskError
from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.health.station import StationModules
from kiosk.simulate import sample_nik
from kiosk.store.sqlite import EnrollmentStore

DAY_S = 8 * 3600
GOAL_PER_DAY = 200
DELIVERED_BAUD = 57600  # an R307 as it comes from the factory
GOOD_FINGERS = ("good_1", "good_2", "good_3", "good_4")
I18N = Path(kiosk.__file__).parent / "i18n"
STEPS = ("arrive", "nik", "consent", "face", "fingerprints", "signature", "review", "done")


# -- the citizen's model --------------------------------------------------------------------


@dataclass(frozen=True)
class CitizenModel:
    """The citizen's own times, in seconds (see the module docstring for sources)."""

    words_per_minute: float = 150.0
    tap_s: float = 1.5
    walk_up_s: float = 10.0
    find_card_s: float = 5.0
    digit_s: float = 1.0
    nik_digits: int = 16
    check_nik_s: float = 3.0
    pose_s: float = 4.0
    place_finger_s: float = 4.0
    sign_s: float = 6.0
    review_look_s: float = 8.0
    receipt_s: float = 5.0
    sensor_image_s: float = 0.3  # device time the emulator does not spend (R307 datasheet)
    lift_s: float = 0.5  # hidden in the image transfer
    success_pause_s: float = 0.5  # FingerprintsScreen.pause_after_success_s: hidden


class ScreenTexts:
    """Word counts of what each screen shows, from the kiosk's own texts."""

    def __init__(self, language: str = "id") -> None:
        self._tables = {
            p.stem: tomllib.loads(p.read_text()) for p in (I18N / language).glob("*.toml")
        }

    def words(self, *keys: str) -> int:
        total = 0
        for key in keys:
            node = self._tables
            for part in key.split("."):
                node = node[part]
            text = re.sub(r"\[/?b\]|\{[a-z_]+\}", " ", node)  # markup and placeholders
            total += len(text.split())
        return total


@dataclass(frozen=True)
class ModelRow:
    step: str
    what: str
    seconds: float


def citizen_rows(model: CitizenModel, texts: ScreenTexts) -> list[ModelRow]:
    """The modelled time of one citizen whose every print is good the first time."""

    def read(*keys: str) -> float:
        return texts.words(*keys) / model.words_per_minute * 60

    return [
        ModelRow("arrive", "walk up from the queue", model.walk_up_s),
        ModelRow(
            "arrive",
            "read the welcome, tap a language",
            read("welcome.title", "welcome.choose") + model.tap_s,
        ),
        ModelRow("nik", "read the NIK screen", read("nik.entry.title", "nik.entry.hint")),
        ModelRow("nik", "find the family card", model.find_card_s),
        ModelRow("nik", f"type {model.nik_digits} digits", model.nik_digits * model.digit_s),
        ModelRow("nik", "check the number, tap Lanjut", model.check_nik_s + model.tap_s),
        ModelRow(
            "consent",
            "read the consent, tap Saya setuju",
            read("consent.title", "consent.body") + model.tap_s,
        ),
        ModelRow("face", "read the face screen", read("face.title", "face.instructions")),
        ModelRow("face", "stand still for the photo", model.pose_s),
        ModelRow(
            "fingerprints", "read the finger instructions (once)", read("fingerprints.instructions")
        ),
        ModelRow(
            "fingerprints", "see which finger, place it; 10 fingers", 10 * model.place_finger_s
        ),
        ModelRow(
            "fingerprints",
            "hold still while imaged, 10 fingers (device)",
            10 * model.sensor_image_s,
        ),
        ModelRow(
            "signature",
            "read, sign, tap Selesai",
            read("signature.instructions") + model.sign_s + model.tap_s,
        ),
        ModelRow(
            "review",
            "read, look over, tap simpan",
            read("review.instructions", "review.save") + model.review_look_s + model.tap_s,
        ),
        ModelRow(
            "done",
            "read the receipt, take it, tap Selesai",
            read("done.title", "done.saved", "done.your_number", "done.next")
            + model.receipt_s
            + model.tap_s,
        ),
    ]


def retry_seconds(model: CitizenModel, texts: ScreenTexts) -> float:
    """One finger taken again: the hint read, the finger placed again, imaged again."""
    hint = texts.words("quality.finger.too_small") / model.words_per_minute * 60
    return hint + model.place_finger_s + model.sensor_image_s


# -- the measured run -----------------------------------------------------------------------


class Hand:
    """Puts a finger on the emulator's glass the moment the reader waits for one and
    lifts it at LIFT: the flow's listener, called on the reader's thread."""

    def __init__(self, sensor: SensorEmulator) -> None:
        self.sensor = sensor

    def __call__(self, flow: EnrollmentFlow) -> None:
        phase = flow.finger_phase
        if phase is FingerPhase.WAITING and not self.sensor.finger_on_glass:
            self.sensor.place_finger()
        elif phase in (FingerPhase.LIFT, FingerPhase.LIFT_FIRST) and self.sensor.finger_on_glass:
            self.sensor.lift_finger()


@dataclass
class CitizenRun:
    """One citizen's measured device and software seconds per step."""

    device: dict[str, float]
    extra_attempts: int


@dataclass
class SpeedRun:
    baud: int
    open_s: float = 0.0
    citizens: list[CitizenRun] = field(default_factory=list)
    failed: int = 0
    error: str = ""


def finger_script(poor_every: int) -> list[str]:
    """Fingers the emulator's glass gets in turn: one poor print in ``poor_every``."""
    if poor_every <= 0:
        return list(GOOD_FINGERS)
    goods = [GOOD_FINGERS[i % len(GOOD_FINGERS)] for i in range(poor_every - 1)]
    return [*goods, "poor"]


def enroll(flow: EnrollmentFlow, nik: str) -> CitizenRun:
    """Walk one citizen through the flow; the device's seconds of each step."""
    flow.start("id")
    if not flow.submit_nik(nik).ok:
        raise KioskError(f"the NIK {nik} was rejected")
    flow.accept_consent()
    while flow.step is Step.FACE:
        if flow.capture_face().fault:
            raise KioskError("the camera failed")
        if flow.face_pending is not None:
            flow.accept_face()  # the citizen says yes to the photo
    while flow.step is Step.FINGERPRINTS:
        result = flow.capture_finger()
        if result.fault:
            raise KioskError(f"the fingerprint reader failed: {flow.problem}")
    flow.modules.signature.sign()
    flow.submit_signature()
    if flow.step is not Step.REVIEW:
        raise KioskError("the signature was refused")
    started = time.perf_counter()
    if flow.save() is None:
        raise KioskError("the store refused the enrollment")
    save_s = time.perf_counter() - started
    enrollment = flow.enrollment
    spent = {str(step): seconds for step, seconds in enrollment.step_seconds.items()}
    spent["done"] = save_s  # building and saving the packet, after the review's clock stopped
    extra = sum(record.attempts - 1 for record in enrollment.fingers.values())
    flow.finish()
    return CitizenRun(spent, extra)


def run_speed(baud: int, citizens: int, poor_every: int, seed: int) -> SpeedRun:
    """``citizens`` enrollments with the reader at ``baud``; never raises (error kept)."""
    run = SpeedRun(baud)
    with tempfile.TemporaryDirectory(prefix=f"rekam-day-{baud}-") as scratch:
        sensor = SensorEmulator(
            model="R307", baudrate=DELIVERED_BAUD, pace=True, fingers=finger_script(poor_every)
        )
        store = None
        modules = None
        try:
            sensor.start()
            reader = ZhiantecReader(
                port=sensor.port,
                baudrate=DELIVERED_BAUD,
                fast_baudrate=baud if baud != DELIVERED_BAUD else None,
            )
            modules = StationModules(
                camera=FakeCamera(script=["face"]),
                fingerprint=reader,
                signature=FakeSignaturePad(),
                indicators=FakeIndicators(),
            )
            started = time.perf_counter()
            failures = modules.open()
            run.open_s = time.perf_counter() - started
            if failures:
                raise KioskError("; ".join(f"{kind}: {err}" for kind, err in failures.items()))
            store = EnrollmentStore(Path(scratch), throwaway_sealer(f"DAY-{baud}"))
            flow = EnrollmentFlow(
                station_id=f"DAY-{baud}", modules=modules, sink=store, clock=time.perf_counter
            )
            flow.subscribe(Hand(sensor))
            rng = random.Random(seed)
            for _ in range(citizens):
                try:
                    run.citizens.append(enroll(flow, sample_nik(rng, date.today())))
                except KioskError as exc:
                    run.failed += 1
                    run.error = str(exc)
                    flow.cancel()
        except Exception as exc:  # reported in the table, never a traceback mid-run
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            if modules is not None:
                modules.close()
            if store is not None:
                store.close()
            sensor.stop()
    return run


# -- the figures ----------------------------------------------------------------------------


def totals(
    run: SpeedRun, rows: list[ModelRow], retry_s: float
) -> dict[str, list[tuple[float, float]]]:
    """Per step, per citizen: (citizen's modelled seconds, device's measured seconds)."""
    human = {step: sum(r.seconds for r in rows if r.step == step) for step in STEPS}
    out: dict[str, list[tuple[float, float]]] = {step: [] for step in STEPS}
    for citizen in run.citizens:
        for step in STEPS:
            seconds = human[step] + (
                citizen.extra_attempts * retry_s if step == "fingerprints" else 0.0
            )
            out[step].append((seconds, citizen.device.get(step, 0.0)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=2, help="at each speed (default 2)")
    parser.add_argument(
        "--baud", type=int, action="append", help="57600 and/or 115200 (default both)"
    )
    parser.add_argument(
        "--poor-every", type=int, default=10, help="one poor print in N captures (0: none)"
    )
    parser.add_argument("--seed", type=int, default=1, help="for the citizens' NIKs")
    parser.add_argument("--one-at-a-time", action="store_true", help="not side by side")
    args = parser.parse_args(argv)
    bauds = args.baud or [57600, 115200]

    model, texts = CitizenModel(), ScreenTexts("id")
    rows = citizen_rows(model, texts)
    retry_s = retry_seconds(model, texts)

    print(machine_line())
    print(
        f"citizens: {args.citizens} at each of {', '.join(f'{b:,}' for b in bauds)} baud "
        f"({'one after the other' if args.one_at_a_time else 'side by side'}); "
        + (f"one poor print in {args.poor_every} captures" if args.poor_every > 0 else "all good")
    )
    print()
    print(f"the citizen's model (seconds; reading at {model.words_per_minute:g} words a minute):")
    for row in rows:
        print(f"  {row.step:<13} {row.what:<52} {row.seconds:>6.1f}")
    print(
        f"  {'fingerprints':<13} {'each finger taken again (hint, place, image)':<52} "
        f"{retry_s:>6.1f}"
    )
    print(
        f"  hidden in device time: lifting a finger ({model.lift_s:g} s, during the image "
        f"transfer), the screen's pause after a good finger ({model.success_pause_s:g} s)"
    )
    print(f"  sum for a citizen whose prints are all good: {sum(r.seconds for r in rows):.1f} s")
    print(flush=True)

    runs: dict[int, SpeedRun] = {}
    started = time.perf_counter()
    if args.one_at_a_time:
        for baud in bauds:
            runs[baud] = run_speed(baud, args.citizens, args.poor_every, args.seed)
    else:
        threads = []
        for baud in bauds:

            def work(baud: int = baud) -> None:
                runs[baud] = run_speed(baud, args.citizens, args.poor_every, args.seed)

            threads.append(threading.Thread(target=work, name=f"day-{baud}"))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wall = time.perf_counter() - started

    ok = True
    summary: dict[int, tuple[float, dict[str, tuple[float, float]]]] = {}
    for baud in bauds:
        run = runs[baud]
        print(
            f"{baud:,} baud: {len(run.citizens)} citizens enrolled, {run.failed} failed; "
            f"reader opened in {run.open_s:.1f} s (handshake, notepad id"
            f"{', speed switch' if baud != DELIVERED_BAUD else ''})"
            + (f"; error: {run.error}" if run.error else "")
        )
        if not run.citizens:
            ok = False
            continue
        per_step = totals(run, rows, retry_s)
        medians = {
            step: (
                statistics.median(h for h, _ in values),
                statistics.median(d for _, d in values),
            )
            for step, values in per_step.items()
        }
        citizen_totals = [
            sum(h + d for h, d in (per_step[step][i] for step in STEPS))
            for i in range(len(run.citizens))
        ]
        summary[baud] = (statistics.median(citizen_totals), medians)
        retries = statistics.median(c.extra_attempts for c in run.citizens)
        print(f"  fingers taken again per citizen (median): {retries:g}")
    print()

    if not summary:
        print("no citizen was enrolled: no figures")
        return 1
    header = f"{'step':<13}" + "".join(f" | {f'{b:,} baud':^26}" for b in summary)
    print("per step, median over the citizens (s)")
    print(header)
    print(f"{'':<13}" + "".join(f" | {'citizen':>8} {'device':>8} {'total':>8}" for _ in summary))
    for step in STEPS:
        line = f"{step:<13}"
        for _, medians in summary.values():
            human, device = medians[step]
            line += f" | {human:>8.1f} {device:>8.2f} {human + device:>8.1f}"
        print(line)
    line = f"{'per citizen':<13}"
    for total, medians in summary.values():
        human = sum(h for h, _ in medians.values())
        device = sum(d for _, d in medians.values())
        line += f" | {human:>8.1f} {device:>8.2f} {total:>8.1f}"
    print(line)
    print("(device = measured device and software time; done = building and saving the packet)")
    print()
    for baud, (total, medians) in summary.items():
        per_day = DAY_S / total
        share = sorted(((h + d, step, h, d) for step, (h, d) in medians.items()), reverse=True)
        top = ", ".join(
            f"{step} {seconds / total:.0%} (citizen {h:.0f} s, device {d:.0f} s)"
            for seconds, step, h, d in share[:3]
        )
        device_total = sum(d for _, d in medians.values())
        verdict = "meets" if per_day >= GOAL_PER_DAY else "misses"
        print(
            f"{baud:,} baud: {total / 60:.2f} min a citizen, {per_day:.0f} citizens in 8 hours "
            f"({verdict} the goal of {GOAL_PER_DAY}); device {device_total:.0f} s, "
            f"citizen {total - device_total:.0f} s"
        )
        print(f"  largest: {top}")
        per_capture = statistics.median(
            c.device.get("fingerprints", 0.0) / (10 + c.extra_attempts) for c in runs[baud].citizens
        )
        print(
            f"  the reader: {per_capture:.2f} s a capture (measured); the citizen's own time "
            f"alone would allow {DAY_S / (total - device_total):.0f} a day"
        )
    print()
    print(f"measured in {wall:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
