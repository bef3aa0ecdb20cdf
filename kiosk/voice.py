"""Spoken guidance: the kiosk says its prompts aloud with espeak-ng, never blocking the UI.

:meth:`Speaker.say` only records the request and returns (the Kivy UI thread
calls it, every frame if it likes); one named background thread runs
``espeak-ng -v <voice> -s <rate> -b 1`` as a subprocess, the text on its stdin
(never a shell, never an argument espeak-ng could read as an option)::

    with Speaker(rate=150) as speaker:
        speaker.say("Mendekat ke kamera.", "id")  # returns at once; spoken on its thread
        speaker.say("Mendekat ke kamera.", "id")  # being said: dropped, not repeated

What is said:

- only the latest request matters: a newer prompt replaces one not yet
  started; with ``interrupt=True`` it also cuts short the one being spoken;
- the same prompt (same text and language) is not said again until
  ``repeat_after_s`` after it was last finished, so a citizen is not nagged;
  other prompts are not held back by it;
- :meth:`Speaker.silence` drops what is pending and stops what is being said
  (the citizen left the screen; the capture succeeded).

A missing espeak-ng or a failing audio device is logged once (until speech
works again) and never raises: the kiosk then guides in words and light only.
``[voice] enabled = false`` in the station file gives a :class:`SilentSpeaker`
from :func:`speaker_from_config`, with the same methods doing nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

DEFAULT_COMMAND = ("espeak-ng",)
# espeak-ng's own voice names for the kiosk's languages
VOICES: Mapping[str, str] = {"id": "id", "en": "en"}
DEFAULT_RATE = 150  # words a minute: espeak-ng's 175 is brisk for a prompt heard once
MIN_RATE, MAX_RATE = 80, 450  # espeak-ng's own range
REPEAT_AFTER_S = 4.0
# Longer than any prompt takes to say: a process still running is hung (a stuck
# audio device) and is killed, so the next prompt is not held up for ever.
MAX_SPEECH_S = 20.0
_POLL_S = 0.05  # how often the worker checks for a newer prompt while one is spoken
_JOIN_S = 2.0


class SilentSpeaker:
    """A speaker that says nothing: voice turned off in the station file."""

    closed = False

    def say(self, text: str, language: str) -> None:
        """Do nothing, at once."""

    def silence(self) -> None:
        """Do nothing."""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SilentSpeaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Speaker:
    """Says prompts aloud on its own thread, latest first, without repeating itself.

    ``command`` is the program and any leading arguments (default
    ``["espeak-ng"]``; tests pass a stand-in, or ``["espeak-ng", "-w", path]``
    to write a WAV file instead of playing); the voice, rate and ``-b 1``
    (UTF-8 input) are added after it and the text goes to its stdin.
    ``voices`` maps a language to an espeak-ng voice. ``clock`` gives seconds
    (monotonic) for the no-repeat rule. A prompt still being said after
    ``max_speech_s`` is taken for a hung audio device and killed. A ``rate``
    outside 80..450 or a negative ``repeat_after_s`` is a ValueError. The
    thread starts here and ends at :meth:`close`, which also stops a prompt
    being spoken.
    """

    def __init__(
        self,
        *,
        command: Sequence[str] = DEFAULT_COMMAND,
        rate: int = DEFAULT_RATE,
        voices: Mapping[str, str] = VOICES,
        repeat_after_s: float = REPEAT_AFTER_S,
        interrupt: bool = False,
        max_speech_s: float = MAX_SPEECH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
            raise ValueError(f"command must be a program and its arguments, got {command!r}")
        if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
            raise ValueError(f"rate must be {MIN_RATE} to {MAX_RATE} words a minute, got {rate!r}")
        if not repeat_after_s >= 0.0:
            raise ValueError(f"repeat_after_s must be 0 or more, got {repeat_after_s!r}")
        if not max_speech_s > 0.0:
            raise ValueError(f"max_speech_s must be more than 0, got {max_speech_s!r}")
        self._command = tuple(command)
        self._rate = rate
        self._voices = dict(voices)
        self._repeat_after_s = float(repeat_after_s)
        self._interrupt = interrupt
        self._max_speech_s = max_speech_s
        self._clock = clock
        self._cond = threading.Condition()
        # guarded by _cond:
        self._pending: tuple[str, str] | None = None
        self._speaking: tuple[str, str] | None = None
        self._last_said: dict[tuple[str, str], float] = {}  # prompt -> when it last ended
        self._hush = False  # silence(): stop the prompt being spoken
        self._closing = False
        self._process: subprocess.Popen[bytes] | None = None  # the worker's; read by close()
        self._failing = False  # a failure was logged; log again only after a success
        self.spoken = 0  # prompts espeak-ng finished without a fault (for tests and health)
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closing

    def say(self, text: str, language: str) -> None:
        """Ask for ``text`` to be spoken in ``language`` ("id" or "en"); returns at once.

        Called on any thread (the UI's, typically). Dropped when the same
        prompt is pending, being spoken, or ended less than ``repeat_after_s``
        ago; otherwise it replaces any prompt not yet started. Blank text and
        calls after :meth:`close` are ignored; a language with no voice or
        text that is not a string is a ValueError (a bug in the caller).
        """
        if not isinstance(text, str):
            raise ValueError(f"text to say must be a string, got {type(text).__name__}")
        if language not in self._voices:
            raise ValueError(
                f"no voice for language {language!r}; known: {', '.join(self._voices)}"
            )
        text = " ".join(text.split())  # one line: espeak-ng reads stdin line by line
        if not text:
            return
        prompt = (text, language)
        with self._cond:
            if self._closing or prompt in (self._pending, self._speaking):
                return
            ended = self._last_said.get(prompt)
            if ended is not None and self._clock() - ended < self._repeat_after_s:
                return
            self._pending = prompt
            self._cond.notify_all()

    def silence(self) -> None:
        """Drop the prompt not yet started and stop the one being spoken, from any thread."""
        with self._cond:
            self._pending = None
            if self._speaking is not None:
                self._hush = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread and any prompt being spoken; idempotent, from any thread
        but the speaker's own."""
        with self._cond:
            self._closing = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(_JOIN_S)
        process = self._process
        if process is not None:  # the worker is stuck: end the process for it
            _stop(process)

    def __enter__(self) -> Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the speaker's thread ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._pending is not None)
                if self._closing:
                    return
                prompt, self._pending = self._pending, None
                self._speaking, self._hush = prompt, False
            assert prompt is not None
            try:
                self._speak(*prompt)
            except Exception:  # never let a surprise end the thread: the next prompt may work
                log.exception("speaking %r failed", prompt[0])
            finally:
                with self._cond:
                    self._speaking = None
                    now = self._clock()
                    self._last_said = {  # only the prompts still held back
                        said: ended
                        for said, ended in self._last_said.items()
                        if now - ended < self._repeat_after_s
                    }
                    self._last_said[prompt] = now

    def _speak(self, text: str, language: str) -> None:
        argv = [*self._command, "-v", self._voices[language], "-s", str(self._rate), "-b", "1"]
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # the UI's Ctrl-C is not espeak-ng's
            )
        except OSError as exc:  # not installed, not executable
            self._fault(f"cannot run {argv[0]} ({exc.strerror or exc}): the kiosk will not speak")
            return
        self._process = process
        try:
            try:
                assert process.stdin is not None
                process.stdin.write(text.encode("utf-8") + b"\n")
                process.stdin.close()
            except OSError:  # it died before reading (its error is on stderr)
                pass
            outcome = self._wait(process)
        finally:
            _stop(process)
            errors = process.stderr.read(4096) if process.stderr else b""
            if process.stderr:
                process.stderr.close()
            self._process = None
        if outcome != "done":
            return
        message = _audio_error(errors)
        if process.returncode != 0 or message:
            reason = message or f"exit status {process.returncode}"
            self._fault(f"{argv[0]} could not speak ({reason}): the kiosk will not speak")
            return
        if self._failing:
            log.info("%s speaks again", argv[0])
            self._failing = False
        self.spoken += 1

    def _wait(self, process: subprocess.Popen[bytes]) -> str:
        """Wait for ``process``: "done", or "stopped" when it was cut short."""
        deadline = time.monotonic() + self._max_speech_s
        while process.poll() is None:
            with self._cond:
                stop = self._closing or self._hush or (self._interrupt and self._pending)
            if stop:
                return "stopped"
            if time.monotonic() > deadline:
                self._fault(f"{self._command[0]} hung for {self._max_speech_s:g} s: killed")
                return "stopped"
            with self._cond:
                self._cond.wait(_POLL_S)
        return "done"

    def _fault(self, message: str) -> None:
        if not self._failing:
            log.warning("%s", message)
            self._failing = True
        else:
            log.debug("%s", message)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` and what it started (its own process group): TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:  # not reaped before the group is signalled
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.5)
    process.wait()


def _audio_error(stderr: bytes) -> str:
    """espeak-ng's complaint about the audio device: it may exit 0 having played nothing."""
    lines = stderr.decode("utf-8", "replace").splitlines()
    errors = [line.strip() for line in lines if line.strip().lower().startswith("error")]
    if not errors:
        return ""
    alsa = next((line.strip() for line in lines if "Unknown PCM" in line), "")
    return "; ".join(filter(None, [errors[0], alsa]))


def speaker_from_config(enabled: bool, rate: int = DEFAULT_RATE) -> Speaker | SilentSpeaker:
    """The station's speaker: a :class:`Speaker` when ``[voice] enabled``, else silent::

    voice = speaker_from_config(config.voice.enabled, config.voice.rate)
    """
    return Speaker(rate=rate) if enabled else SilentSpeaker()
