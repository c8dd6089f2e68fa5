"""Speaking the text aloud through a local engine: speech-dispatcher where its server runs (the
Linux accessibility stack, so the person's own voice settings and audio apply), espeak-ng otherwise.
Never a network service: what the person writes may be private.

The language follows the text, sentence by sentence: a Cyrillic sentence is spoken by a Russian
voice, a Latin one by an English voice (``[speech] languages`` / ``voices``). A :class:`Speaker`
speaks, repeats the last text and stops; stop ends the running utterance at once (it kills the
engine's process group) and drops the queued ones. :func:`render_wav` writes the configured voice
to a WAV file instead (``razvilka say TEXT --wav FILE``).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import wave
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from razvilka.outconfig import DEFAULT_LANGUAGES, SpeechConfig
from razvilka.outtools import ErrorCode, OutputError, failed, find_tool, missing_tool
from razvilka.private import open_private
from razvilka.sentences import split_sentences

__all__ = ["Speaker", "Utterance", "choose_engine", "espeak_command", "language_of", "plan",
           "render_wav", "script_of", "spd_command", "speechd_reachable"]

log = logging.getLogger(__name__)

#: the most characters one engine process is given (a command-line argument is limited to 128 KiB)
MAX_UTTERANCE_CHARS = 20000


@dataclass(frozen=True)
class Utterance:
    """One stretch of text in one language, spoken by one engine process."""

    language: str
    voice: str   # the engine's voice name ("" = the engine's own choice for ``language``)
    text: str


def script_of(text: str) -> str | None:
    """"cyrillic" or "latin", whichever has more letters in ``text`` (a tie: cyrillic); None when it has neither."""
    cyrillic = latin = 0
    for ch in text:
        if "\u0400" <= ch <= "\u052f":
            cyrillic += 1
        elif ch.isalpha() and (ch.isascii() or "\u00c0" <= ch <= "\u024f"):
            latin += 1
    if cyrillic == latin == 0:
        return None
    return "cyrillic" if cyrillic >= latin else "latin"  # a tie: a Russian sentence with an English name


def language_of(text: str, config: SpeechConfig) -> str:
    """The language ``text`` is spoken in: its script's language, else the Latin one."""
    languages = {**DEFAULT_LANGUAGES, **config.languages}
    script = script_of(text)
    return languages.get(script or "latin", languages["latin"])


def plan(text: str, config: SpeechConfig) -> list[Utterance]:
    """Split ``text`` into utterances: consecutive sentences in one language go together."""
    out: list[tuple[str, list[str]]] = []
    for sentence in split_sentences(text):
        if script_of(sentence) is None and out:
            lang = out[-1][0]  # no letters ("42!"): said in the language of the sentence before
        else:
            lang = language_of(sentence, config)
        if out and out[-1][0] == lang and sum(len(s) + 1 for s in out[-1][1]) + len(sentence) <= MAX_UTTERANCE_CHARS:
            out[-1][1].append(sentence)
        else:
            out.append((lang, [sentence]))
    return [Utterance(lang, config.voices.get(lang, ""), " ".join(parts)) for lang, parts in out]


def espeak_command(utterance: Utterance, config: SpeechConfig, *, wav: Path | None = None) -> list[str]:
    """The espeak-ng command line for one utterance: to the sound card, or to ``wav``."""
    voice = utterance.voice or utterance.language
    if config.variant:
        voice += f"+{config.variant}"
    cmd = ["espeak-ng", "-b", "1", "-v", voice, "-s", str(config.rate), "-p", str(config.pitch),
           "-a", str(config.volume)]
    if wav is not None:
        cmd += ["-w", str(wav)]
    return [*cmd, "--", utterance.text]


def _speechd_rate(wpm: int) -> int:
    """Words per minute -> speech-dispatcher's -100..100 (its espeak-ng module: 80..450 wpm, 0 = 175)."""
    return round((wpm - 175) * 100 / (95 if wpm < 175 else 275))


def spd_command(utterance: Utterance, config: SpeechConfig) -> list[str]:
    """The spd-say command line for one utterance; ``-w`` makes it last as long as the speech."""
    cmd = ["spd-say", "-w", "-l", utterance.language, "-r", str(_speechd_rate(config.rate)),
           "-p", str(max(-100, min(100, (config.pitch - 50) * 2))),
           "-i", str(max(-100, min(100, config.volume * 2 - 100)))]
    if utterance.voice:
        cmd += ["-y", utterance.voice]
    return [*cmd, "--", utterance.text]


def _speechd_address(env: Mapping[str, str]) -> tuple[int, str | tuple[str, int]] | None:
    """Where a local speech-dispatcher listens ($SPEECHD_ADDRESS, else its default socket); None for
    an address on another machine (never used: speech stays local)."""
    given = env.get("SPEECHD_ADDRESS", "")
    if given.startswith("inet_socket"):
        parts = given.split(":")
        host = parts[1] if len(parts) > 1 and parts[1] else "127.0.0.1"
        port = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 6560
        return (socket.AF_INET, (host, port)) if host in ("127.0.0.1", "localhost") else None
    if given.startswith("unix_socket:") and given[len("unix_socket:"):]:
        return socket.AF_UNIX, given[len("unix_socket:"):]
    runtime = env.get("XDG_RUNTIME_DIR") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return socket.AF_UNIX, str(Path(runtime) / "speech-dispatcher" / "speechd.sock")


def speechd_reachable(env: Mapping[str, str] | None = None, timeout: float = 0.5) -> bool:
    """Whether a speech-dispatcher server answers on this machine (a connect succeeds)."""
    address = _speechd_address(os.environ if env is None else env)
    if address is None:
        return False
    family, where = address
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(where)
        except OSError:
            return False
    return True


def choose_engine(config: SpeechConfig, env: Mapping[str, str] | None = None) -> str:
    """"speech-dispatcher" or "espeak-ng", as configured; "auto" takes speech-dispatcher only when
    its server already runs. Raises :class:`OutputError` naming the package when none is installed."""
    env = os.environ if env is None else env
    if config.engine == "espeak-ng" or config.engine == "speech-dispatcher":
        tool = "espeak-ng" if config.engine == "espeak-ng" else "spd-say"
        if find_tool(tool, env) is None:
            raise missing_tool(f"speech.engine = {config.engine!r}", (tool,), "", env=env)
        return config.engine
    if find_tool("spd-say", env) and speechd_reachable(env):
        return "speech-dispatcher"
    if find_tool("espeak-ng", env):
        return "espeak-ng"
    if find_tool("spd-say", env):
        return "speech-dispatcher"  # spd-say starts the server itself
    raise missing_tool("speaking", ("espeak-ng", "spd-say"), "", env=env)


def render_wav(text: str, config: SpeechConfig, path: str | Path,
               env: Mapping[str, str] | None = None) -> list[Utterance]:
    """Write ``text`` in the configured voices to the WAV file ``path`` (0600; espeak-ng: speech-dispatcher
    cannot write files). Returns the utterances, so the caller can say which voice spoke what."""
    env = dict(os.environ if env is None else env)
    if find_tool("espeak-ng", env) is None:
        raise missing_tool("writing speech to a WAV file", ("espeak-ng",), "", env=env)
    utterances = plan(text, config)
    if not utterances:
        raise OutputError(ErrorCode.BAD_CONFIG, "there is no text to speak: the WAV would be empty")
    params: tuple[int, int, int] | None = None  # channels, sample width, frame rate
    frames: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="razvilka-say-") as tmp:
        for n, u in enumerate(utterances):
            part = Path(tmp) / f"{n}.wav"
            done = subprocess.run(espeak_command(u, config, wav=part), env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
            if done.returncode != 0 or not part.exists():
                raise OutputError(ErrorCode.DEVICE_LOST, f"espeak-ng could not speak {u.language!r} with voice "
                                  f"{u.voice or u.language!r}: {done.stderr.decode(errors='replace').strip()}")
            with wave.open(str(part), "rb") as w:
                got = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                if params is not None and got != params:
                    raise OutputError(ErrorCode.BAD_CONFIG, f"voice {u.voice or u.language!r} writes another sample "
                                      f"format {got} than the voice before it {params}")
                params = got
                frames.append(w.readframes(w.getnframes()))
    assert params is not None
    with open_private(path, "wb") as f, wave.open(f, "wb") as out:
        out.setnchannels(params[0])
        out.setsampwidth(params[1])
        out.setframerate(params[2])
        out.writeframes(b"".join(frames))
    return utterances


class Speaker:
    """Speaks through one engine process at a time; a worker thread starts the next queued utterance
    when one ends. ``speak`` interrupts what is being said unless ``interrupt=False`` (then it queues)."""

    def __init__(self, config: SpeechConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.engine = choose_engine(config, self.env)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Utterance] = deque()
        self._proc: subprocess.Popen[bytes] | None = None
        self._errlog: IO[bytes] | None = None
        self._started = threading.Condition(self._lock)
        self._idle = threading.Event()
        self._idle.set()
        self._last = ""
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="razvilka-speech", daemon=True)
        self._thread.start()

    @property
    def last(self) -> str:
        """The text spoken last (what :meth:`repeat` says again)."""
        return self._last

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The engine process speaking now, if any."""
        return self._proc

    def command_for(self, utterance: Utterance) -> list[str]:
        return spd_command(utterance, self.config) if self.engine == "speech-dispatcher" \
            else espeak_command(utterance, self.config)

    def speak(self, text: str, *, interrupt: bool = True) -> None:
        """Say ``text`` (a sentence or the whole text); raises :class:`OutputError` if the engine cannot start."""
        utterances = plan(text, self.config)
        if not utterances:
            return
        if interrupt:
            self.stop()  # before the new utterance starts: speech-dispatcher's cancel would hit it too
        with self._lock:
            self._last = text
            self._queue.extend(utterances)
            if self._proc is None:
                self._start_next_locked()

    def repeat(self) -> bool:
        """Say the last text again; False when nothing was said yet."""
        if not self._last:
            return False
        self.speak(self._last)
        return True

    def stop(self) -> None:
        """Stop speaking now: the running utterance is cut off and the queued ones dropped."""
        with self._lock:
            was_speaking = self._halt_locked()
        self._cancel_server(was_speaking)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued has been said (or stopped); False on timeout."""
        return self._idle.wait(timeout)

    def wait_started(self, timeout: float) -> subprocess.Popen[bytes] | None:
        """The engine process once one is speaking (None if none started within ``timeout``)."""
        with self._lock:
            self._started.wait_for(lambda: self._proc is not None, timeout)
            return self._proc

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(5)

    def __enter__(self) -> Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- internals
    def _start_next_locked(self) -> None:
        utterance = self._queue.popleft()
        err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; the worker closes it
        try:
            self._proc = subprocess.Popen(self.command_for(utterance), env=self.env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        except OSError as exc:
            err.close()
            self._queue.clear()
            self._idle.set()
            tool = "spd-say" if self.engine == "speech-dispatcher" else "espeak-ng"
            if isinstance(exc, FileNotFoundError):
                raise missing_tool("speaking", (tool,), utterance.text, env=self.env) from None
            raise failed(f"speaking with {tool}", ErrorCode.DEVICE_LOST, str(exc), utterance.text,
                         env=self.env) from None
        self._errlog = err
        self._idle.clear()
        self._started.notify_all()
        self._wake.notify_all()

    def _halt_locked(self) -> bool:
        """Kill the running utterance and drop the queue; True if something was being said."""
        self._queue.clear()
        proc, self._proc = self._proc, None
        running = False
        if proc is not None and proc.poll() is None:
            running = True
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._idle.set()
        return running

    def _cancel_server(self, was_speaking: bool) -> None:
        """speech-dispatcher keeps speaking after spd-say is killed: tell the server to cancel too."""
        if self.engine != "speech-dispatcher" or not was_speaking:
            return
        try:
            subprocess.run(["spd-say", "-C"], env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not cancel speech-dispatcher's speech: %s", exc)

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                proc = self._proc
                if proc is None:
                    self._wake.wait()
                    continue
                errlog = self._errlog
                self._lock.release()
                try:
                    rc = proc.wait()
                finally:
                    self._lock.acquire()
                if rc > 0 and errlog is not None:  # < 0: killed by stop(), not a failure
                    errlog.seek(0)
                    log.warning("%s exited with %d: %s", self.engine, rc,
                                errlog.read().decode(errors="replace").strip()[:500])
                if errlog is not None:
                    errlog.close()
                if self._proc is not proc:
                    continue  # stopped (and maybe restarted) meanwhile
                self._proc = None
                if self._queue:
                    try:
                        self._start_next_locked()
                    except OutputError as exc:
                        log.error("%s", exc)
                else:
                    self._idle.set()
