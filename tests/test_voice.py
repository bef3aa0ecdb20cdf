"""The spoken guidance: real espeak-ng speech, and the speaker's manners with a stand-in."""

from __future__ import annotations

import logging
import shutil
import statistics
import threading
import time
import wave
from pathlib import Path

import pytest

from kiosk.voice import SilentSpeaker, Speaker, speaker_from_config

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")

# A stand-in for espeak-ng: notes its arguments and the text it was given when it
# starts, says "error: ..." on stderr if told to (as espeak-ng does when the
# sound device fails, exiting 0 all the same), then takes as long as told.
STAND_IN = """\
log=$1; delay=$2; status=$3; complaint=$4; shift 4
text=$(cat)
printf '%s|%s\\n' "$*" "$text" >> "$log"
[ -n "$complaint" ] && echo "$complaint" >&2
sleep "$delay"
exit "$status"
"""


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.fixture
def stand_in(tmp_path):
    """``make(delay=0, status=0, complaint="")``: a command running the stand-in, and
    ``said()``: the (arguments, text) of every prompt it started, in order."""
    script = tmp_path / "espeak-stand-in.sh"
    script.write_text(STAND_IN)
    log = tmp_path / "said.txt"

    def make(delay: float = 0.0, status: int = 0, complaint: str = "") -> list[str]:
        return ["sh", str(script), str(log), str(delay), str(status), complaint]

    def said() -> list[tuple[str, str]]:
        if not log.exists():
            return []
        return [tuple(line.split("|", 1)) for line in log.read_text().splitlines()]

    make.said = said
    return make


@pytest.fixture
def speakers():
    """Speakers made through this are closed after the test, whatever happens."""
    made: list[Speaker] = []

    def make(**kwargs) -> Speaker:
        speaker = Speaker(**kwargs)
        made.append(speaker)
        return speaker

    yield make
    for speaker in made:
        speaker.close()


# --- real speech --------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize(
    ("language", "text"),
    [("id", "Lihat lurus ke kamera."), ("en", "Look straight at the camera.")],
)
def test_espeak_ng_speaks_the_prompt_as_audio(speakers, tmp_path, language, text):
    path = tmp_path / "prompt.wav"
    speaker = speakers(command=["espeak-ng", "-w", str(path)])
    speaker.say(text, language)
    wait_until(lambda: speaker.spoken == 1)
    assert path.read_bytes()[:4] == b"RIFF" and path.read_bytes()[8:12] == b"WAVE"
    with wave.open(str(path)) as audio:
        seconds = audio.getnframes() / audio.getframerate()
        frames = audio.readframes(audio.getnframes())
    assert 0.8 < seconds < 5.0  # a short sentence, said at 150 words a minute
    assert len(set(frames)) > 50  # sound, not silence


@needs_espeak
def test_the_indonesian_voice_is_used_and_the_rate_counts(speakers, tmp_path):
    def seconds(language: str, rate: int) -> float:
        path = tmp_path / f"{language}-{rate}.wav"
        speaker = speakers(command=["espeak-ng", "-w", str(path)], rate=rate)
        speaker.say("kurang terang", language)
        wait_until(lambda: speaker.spoken == 1)
        with wave.open(str(path)) as audio:
            return audio.getnframes() / audio.getframerate(), audio.readframes(10**6)

    (slow, bahasa), (fast, _) = seconds("id", 100), seconds("id", 300)
    assert slow > 1.8 * fast
    _, english = seconds("en", 100)
    assert bahasa != english  # "kurang terang" read as Indonesian, not as English words


@needs_espeak
def test_a_failing_sound_device_is_logged_once_and_never_raises(speakers, tmp_path, caplog):
    # a sound device that cannot be opened: espeak-ng complains and exits 0
    speaker = speakers(command=["espeak-ng", "-d", "no-such-device"])
    with caplog.at_level(logging.WARNING, logger="kiosk.voice"):
        for text in ("mendekat", "lihat lurus ke kamera", "kurang terang"):
            speaker.say(text, "id")
            wait_until(lambda text=text: speaker._last_said.get((text, "id")) is not None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "could not speak" in warnings[0].getMessage()
    assert speaker.spoken == 0


# --- never blocking -----------------------------------------------------------------


def test_say_returns_at_once_while_a_slow_command_speaks(speakers, stand_in):
    speaker = speakers(command=stand_in(delay=3))
    times = []
    for number in range(200):  # a frame's worth of calls each, prompts changing
        start = time.perf_counter()
        speaker.say(f"prompt {number % 7}", "id")
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.001
    assert max(times) < 0.05
    wait_until(lambda: len(stand_in.said()) == 1)


def test_the_speaker_works_on_one_named_thread_and_leaves_none_behind(stand_in):
    before = set(threading.enumerate())
    speaker = Speaker(command=stand_in(delay=30))
    (thread,) = set(threading.enumerate()) - before
    assert thread.name == "speaker"
    speaker.say("mendekat", "id")
    wait_until(lambda: stand_in.said())
    start = time.monotonic()
    speaker.close()
    assert time.monotonic() - start < 2.0  # the 30 s prompt was stopped, not waited for
    assert not thread.is_alive() and speaker.closed
    speaker.close()  # idempotent
    speaker.say("mendekat", "id")  # ignored after close
    assert speaker._process is None


# --- what is said -------------------------------------------------------------------


def test_the_text_goes_to_stdin_never_as_an_option(speakers, stand_in):
    speaker = speakers(command=stand_in(), rate=120)
    speaker.say("  -w /tmp/x  --help\n lepas   kacamata ", "id")
    wait_until(lambda: speaker.spoken == 1)
    assert stand_in.said() == [("-v id -s 120 -b 1", "-w /tmp/x --help lepas kacamata")]


def test_only_the_latest_prompt_waits_while_one_is_spoken(speakers, stand_in):
    speaker = speakers(command=stand_in(delay=0.4))
    speaker.say("mendekat", "id")
    wait_until(lambda: stand_in.said())
    for text in ("lihat lurus ke kamera", "lepas kacamata", "kurang terang"):
        speaker.say(text, "id")
    wait_until(lambda: speaker.spoken == 2)
    time.sleep(0.1)
    assert [text for _, text in stand_in.said()] == ["mendekat", "kurang terang"]


def test_interrupt_cuts_a_stale_prompt_short(speakers, stand_in):
    speaker = speakers(command=stand_in(delay=10), interrupt=True)
    speaker.say("mendekat", "id")
    wait_until(lambda: stand_in.said())
    start = time.monotonic()
    speaker.say("terlalu dekat", "id")
    wait_until(lambda: len(stand_in.said()) == 2)
    assert time.monotonic() - start < 1.5
    assert [text for _, text in stand_in.said()] == ["mendekat", "terlalu dekat"]


def test_the_same_prompt_waits_a_few_seconds_before_it_is_said_again(speakers, stand_in):
    clock = Clock()
    speaker = speakers(command=stand_in(), clock=clock, repeat_after_s=4.0)
    for _ in range(30):  # every frame while the citizen is too far
        speaker.say("mendekat", "id")
    wait_until(lambda: speaker.spoken == 1)
    clock.now += 3.9
    speaker.say("mendekat", "id")  # still too far: not nagged yet
    speaker.say("mendekat", "en")  # the language changed: a new prompt
    wait_until(lambda: speaker.spoken == 2)
    clock.now += 0.2
    speaker.say("mendekat", "id")  # 4.1 s on: reminded
    wait_until(lambda: speaker.spoken == 3)
    assert [args.split()[1] + " " + text for args, text in stand_in.said()] == [
        "id mendekat",
        "en mendekat",
        "id mendekat",
    ]


def test_a_prompt_flickering_with_another_is_not_repeated(speakers, stand_in):
    clock = Clock()
    speaker = speakers(command=stand_in(), clock=clock)
    for frame in range(20):  # the measure hovers on its threshold
        speaker.say("mendekat" if frame % 2 else "lihat lurus ke kamera", "id")
        wait_until(lambda: speaker._speaking is None and speaker._pending is None)
        clock.now += 0.1
    assert sorted(text for _, text in stand_in.said()) == ["lihat lurus ke kamera", "mendekat"]


def test_silence_drops_what_waits_and_stops_what_is_said(speakers, stand_in):
    speaker = speakers(command=stand_in(delay=10))
    speaker.say("mendekat", "id")
    wait_until(lambda: stand_in.said())
    speaker.say("kurang terang", "id")
    start = time.monotonic()
    speaker.silence()
    wait_until(lambda: speaker._speaking is None)
    assert time.monotonic() - start < 1.5
    time.sleep(0.1)
    assert [text for _, text in stand_in.said()] == ["mendekat"]
    assert speaker.spoken == 0  # cut short


def test_blank_text_is_not_said(speakers, stand_in):
    speaker = speakers(command=stand_in())
    speaker.say("   \n", "id")
    speaker.say("mendekat", "id")
    wait_until(lambda: speaker.spoken == 1)
    assert [text for _, text in stand_in.said()] == ["mendekat"]


# --- faults -------------------------------------------------------------------------


def test_a_missing_espeak_ng_is_logged_once_and_swallowed(speakers, tmp_path, caplog):
    speaker = speakers(command=[str(tmp_path / "no-espeak-ng-here")])
    with caplog.at_level(logging.DEBUG, logger="kiosk.voice"):
        for text in ("mendekat", "lepas kacamata", "kurang terang"):
            speaker.say(text, "id")
            wait_until(lambda text=text: (text, "id") in speaker._last_said)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot run" in warnings[0].getMessage() and "will not speak" in caplog.text
    assert speaker._thread.is_alive()  # and ready for the next prompt


def test_a_sound_device_error_is_logged_once_until_speech_works_again(speakers, tmp_path, caplog):
    complaint = tmp_path / "complaint.txt"  # while it exists, the "device" fails
    flaky = 'cat > /dev/null; [ -f "$1" ] && cat "$1" >&2; exit 0'
    speaker = speakers(command=["sh", "-c", flaky, "flaky", str(complaint)])

    def say(text: str) -> None:
        speaker.say(text, "id")
        wait_until(lambda: (text, "id") in speaker._last_said)

    with caplog.at_level(logging.INFO, logger="kiosk.voice"):
        complaint.write_text("error: No such file or directory\n")
        say("mendekat")
        say("lepas kacamata")  # still failing: not logged again
        complaint.unlink()
        say("kurang terang")  # the device is back
        complaint.write_text("error: No such file or directory\n")
        say("lihat lurus ke kamera")  # failing again: worth a new line in the log
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING", "INFO", "WARNING"], caplog.text
    assert speaker.spoken == 1


def test_a_failing_exit_status_is_a_fault(speakers, stand_in, caplog):
    speaker = speakers(command=stand_in(status=1, complaint="bad voice"))
    with caplog.at_level(logging.WARNING, logger="kiosk.voice"):
        speaker.say("mendekat", "id")
        wait_until(lambda: ("mendekat", "id") in speaker._last_said)
    assert "exit status 1" in caplog.text and speaker.spoken == 0


def test_a_hung_command_is_killed_and_the_next_prompt_is_said(speakers, stand_in, caplog):
    speaker = speakers(command=stand_in(delay=30), max_speech_s=0.3)
    with caplog.at_level(logging.WARNING, logger="kiosk.voice"):
        start = time.monotonic()
        speaker.say("mendekat", "id")
        wait_until(lambda: ("mendekat", "id") in speaker._last_said)
        assert time.monotonic() - start < 2.0
        speaker.say("kurang terang", "id")
        wait_until(lambda: len(stand_in.said()) == 2)
    assert "hung" in caplog.text


# --- what the caller may get wrong, and the station's choice --------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"command": "espeak-ng"},
        {"command": []},
        {"command": ["espeak-ng", 3]},
        {"rate": 79},
        {"rate": 451},
        {"rate": 150.0},
        {"rate": True},
        {"repeat_after_s": -1.0},
        {"repeat_after_s": float("nan")},
        {"max_speech_s": 0.0},
    ],
)
def test_a_speaker_refuses_settings_it_cannot_use(kwargs):
    with pytest.raises(ValueError):
        Speaker(**kwargs)


def test_say_refuses_a_language_without_a_voice_or_text_that_is_no_text(speakers, stand_in):
    speaker = speakers(command=stand_in())
    with pytest.raises(ValueError, match="no voice for language 'jv'"):
        speaker.say("mendekat", "jv")
    with pytest.raises(ValueError, match="string"):
        speaker.say(None, "id")


def test_voice_off_in_the_station_file_gives_a_silent_speaker():
    silent = speaker_from_config(False, 150)
    assert isinstance(silent, SilentSpeaker)
    silent.say("mendekat", "id")
    silent.silence()
    silent.close()
    assert silent.closed
    with speaker_from_config(True, 120) as speaker:
        assert isinstance(speaker, Speaker) and speaker._rate == 120


def test_the_stand_in_is_run_without_a_shell_from_a_path_with_spaces(tmp_path, speakers):
    folder = tmp_path / "a folder; rm -rf x"
    folder.mkdir()
    script = folder / "say it.sh"
    script.write_text(STAND_IN)
    log = folder / "said.txt"
    speaker = speakers(command=["sh", str(script), str(log), "0", "0", ""])
    speaker.say("$(touch pwned) `touch pwned`; mendekat", "id")
    wait_until(lambda: speaker.spoken == 1)
    assert log.read_text().endswith("|$(touch pwned) `touch pwned`; mendekat\n")
    assert not (Path.cwd() / "pwned").exists() and not (folder / "pwned").exists()
