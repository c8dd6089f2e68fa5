"""Speech with the real engine: espeak-ng renders WAVs (measured from their samples), and a real audio
server (PulseAudio with a null sink, which plays in real time) takes live speech, so that stop is
seen to cut off an utterance that is really playing. Missing programs fail with what to install."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from razvilka.config import ConfigError, load_config
from razvilka.outconfig import SpeechConfig
from razvilka.outtools import ErrorCode, OutputError
from razvilka.sentences import SentenceWatcher, sentence_ends, split_sentences
from razvilka.speech import Speaker, choose_engine, espeak_command, language_of, plan, render_wav, speechd_reachable

EN = "The quick brown fox jumps over the lazy dog."
RU = "Съешь же ещё этих мягких французских булок, да выпей чаю."
LONG = " ".join(["This sentence is long enough to keep a speech engine busy for a good while."] * 12)


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: install the Debian package {package} "
                    "(`./dev.sh test` does)", pytrace=False)
    return path


@pytest.fixture(autouse=True)
def _espeak() -> None:
    _require("espeak-ng", "espeak-ng")


def samples(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64), w.getframerate()


def duration(path: Path) -> float:
    a, rate = samples(path)
    return len(a) / rate


def rms(path: Path) -> float:
    a, _ = samples(path)
    return float(np.sqrt(np.mean(a ** 2)))


def median_f0(path: Path) -> float:
    """The voice's fundamental frequency: autocorrelation peak (60-400 Hz) over the louder 40 ms frames."""
    a, rate = samples(path)
    n = int(0.04 * rate)
    level = np.sqrt(np.mean(a ** 2))
    lo, hi = int(rate / 400), int(rate / 60)
    f0 = []
    for i in range(0, len(a) - n, n):
        frame = a[i:i + n] - a[i:i + n].mean()
        if np.sqrt(np.mean(frame ** 2)) < level:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        f0.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    assert f0, f"{path} has no voiced frames"
    return float(np.median(f0))


def say(tmp_path: Path, text: str, name: str, **settings: Any) -> Path:
    path = tmp_path / f"{name}.wav"
    render_wav(text, SpeechConfig(**settings), path)
    return path


# ------------------------------------------------------------------------------ rendering to WAV
def test_english_and_russian_sentences_are_spoken_aloud(tmp_path: Path) -> None:
    for name, text in (("en", EN), ("ru", RU)):
        path = say(tmp_path, text, name)
        assert duration(path) > 1.0, f"{name}: {duration(path):.2f} s of speech for a whole sentence"
        assert rms(path) > 500, f"{name}: RMS {rms(path):.0f}: the WAV is (nearly) silent"
        assert path.stat().st_mode & 0o777 == 0o600  # the person's words: private


def test_duration_grows_with_the_text(tmp_path: Path) -> None:
    for name, text in (("en", EN), ("ru", RU)):
        one = duration(say(tmp_path, text, f"{name}1"))
        three = duration(say(tmp_path, f"{text} {text} {text}", f"{name}3"))
        assert 2.5 * one < three < 3.5 * one, f"{name}: one sentence {one:.2f} s, three {three:.2f} s"


def test_rate_pitch_and_volume_change_the_voice(tmp_path: Path) -> None:
    slow, fast = duration(say(tmp_path, EN, "slow", rate=120)), duration(say(tmp_path, EN, "fast", rate=300))
    assert fast * 1.8 < slow, f"rate 120: {slow:.2f} s, rate 300: {fast:.2f} s"
    low, high = median_f0(say(tmp_path, RU, "low", pitch=10)), median_f0(say(tmp_path, RU, "high", pitch=90))
    assert high > 1.5 * low, f"pitch 10: {low:.0f} Hz, pitch 90: {high:.0f} Hz"
    quiet, loud = rms(say(tmp_path, EN, "quiet", volume=50)), rms(say(tmp_path, EN, "loud", volume=150))
    assert 2.5 < loud / quiet < 3.5, f"volume 50: RMS {quiet:.0f}, volume 150: RMS {loud:.0f}"


def test_a_cyrillic_sentence_gets_the_russian_voice(tmp_path: Path) -> None:
    config = SpeechConfig()
    [u] = plan(RU, config)
    assert u.language == "ru"
    assert espeak_command(u, config)[:5] == ["espeak-ng", "-b", "1", "-v", "ru"]
    listed = subprocess.run(["espeak-ng", "--voices=ru"], capture_output=True, text=True, check=True).stdout
    assert any(line.split()[1:2] == ["ru"] for line in listed.splitlines()[1:]), listed
    # what was rendered is espeak-ng's Russian voice, not its English one reading Cyrillic
    ours = samples(say(tmp_path, RU, "ours"))[0]
    direct = {}
    for voice in ("ru", "en"):
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(tmp_path / f"{voice}.wav"), RU], check=True)
        direct[voice] = samples(tmp_path / f"{voice}.wav")[0]
    assert np.array_equal(ours, direct["ru"])
    assert not np.array_equal(ours, direct["en"])


def test_mixed_text_switches_voice_per_sentence(tmp_path: Path) -> None:
    text = f"{EN} {RU} Я люблю Python. And back to English."
    assert [(u.language, u.text) for u in plan(text, SpeechConfig())] == [
        ("en", EN), ("ru", f"{RU} Я люблю Python."), ("en", "And back to English.")]
    whole = duration(say(tmp_path, text, "mixed"))
    parts = sum(duration(say(tmp_path, t, f"part{i}")) for i, t in
                enumerate((EN, f"{RU} Я люблю Python.", "And back to English.")))
    assert abs(whole - parts) < 0.01


def test_configured_voices_and_languages_are_used() -> None:
    config = load_config(overrides=["speech.voices.ru=ru-lv", "speech.variant=f3",
                                    "speech.languages.latin=de"], env={})
    assert language_of("Guten Tag.", config.speech) == "de"
    [u] = plan(RU, config.speech)
    assert espeak_command(u, config.speech)[4] == "ru-lv+f3"


def test_out_of_range_settings_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match=r"speech\.rate"):
        load_config(overrides=["speech.rate=10"], env={})
    with pytest.raises(ConfigError, match=r"speech\.engine"):
        load_config(overrides=["speech.engine=cloud"], env={})


def test_cli_say_writes_the_wav(tmp_path: Path) -> None:
    out = tmp_path / "check.wav"
    cli = "import sys, razvilka.cli as c; c.AREAS = ('razvilka.say_cli',); sys.exit(c.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", cli, "--set", "speech.rate=200", "say", RU, "--wav", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ru (ru): " in done.stderr
    assert duration(out) > 1.0 and rms(out) > 500


# ------------------------------------------------------------------------------ choosing the engine
def test_auto_engine_is_espeak_without_a_speech_dispatcher_server(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}  # no server socket there
    assert not speechd_reachable(env)
    assert choose_engine(SpeechConfig(), env) == "espeak-ng"


def test_a_speech_dispatcher_address_elsewhere_is_never_used() -> None:
    env = {**os.environ, "SPEECHD_ADDRESS": "inet_socket:192.0.2.1:6560"}
    assert not speechd_reachable(env)  # refused without trying: speech stays on this machine


def test_a_listening_socket_counts_as_a_reachable_server(tmp_path: Path) -> None:
    (tmp_path / "speech-dispatcher").mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "speech-dispatcher" / "speechd.sock"))
        server.listen(1)
        assert speechd_reachable({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_no_engine_names_the_package(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    with pytest.raises(OutputError) as err:
        choose_engine(SpeechConfig(), env)
    assert err.value.code == ErrorCode.DEVICE_MISSING
    assert "apt-get install espeak-ng" in str(err.value)
    with pytest.raises(OutputError, match="apt-get install speech-dispatcher"):
        choose_engine(SpeechConfig(engine="speech-dispatcher"), env)


# ------------------------------------------------------------------------------ live speech
@pytest.fixture(scope="module")
def audio_server() -> Iterator[dict[str, str]]:
    """A real PulseAudio server whose only sink is a null sink: it consumes audio in real time."""
    pulseaudio = _require("pulseaudio", "pulseaudio")
    home = Path(tempfile.mkdtemp(prefix="rz-pa-", dir="/tmp"))
    sock = home / "native"
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "XDG_CONFIG_HOME": str(home)}
    with open(home / "pulseaudio.log", "wb") as log:  # a file, not a pipe: nobody reads it until it fails
        proc = subprocess.Popen([pulseaudio, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
                                 "--log-target=stderr", "-L", "module-null-sink",
                                 "-L", f"module-native-protocol-unix socket={sock} auth-anonymous=1"],
                                env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(sock))
                break
            except OSError:
                time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        pytest.fail(f"pulseaudio did not start: {(home / 'pulseaudio.log').read_text(errors='replace')[-2000:]}",
                    pytrace=False)
    yield {**env, "PULSE_SERVER": f"unix:{sock}"}
    end(proc)
    shutil.rmtree(home, ignore_errors=True)


def end(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server the test started; kill it if it has not gone in 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def playing_streams(env: dict[str, str]) -> int:
    out = subprocess.run(["pactl", "list", "short", "sink-inputs"], env=env, capture_output=True, text=True, timeout=10)
    return len(out.stdout.splitlines())


def wait_for_stream(env: dict[str, str], timeout: float = 10) -> None:
    """Until the server plays a stream (polling the server, which has no event for it)."""
    deadline = time.monotonic() + timeout
    while playing_streams(env) == 0:
        assert time.monotonic() < deadline, "espeak-ng never started playing on the audio server"
        time.sleep(0.05)


def test_stop_cuts_off_a_long_utterance(audio_server: dict[str, str], tmp_path: Path) -> None:
    length = duration(say(tmp_path, LONG, "long"))
    assert length > 20
    with Speaker(SpeechConfig(engine="espeak-ng"), env=audio_server) as speaker:
        speaker.speak(LONG)
        proc = speaker.wait_started(5)
        assert proc is not None
        wait_for_stream(audio_server)
        assert proc.poll() is None, "the utterance ended by itself before stop"
        t0 = time.monotonic()
        speaker.stop()
        proc.wait(timeout=2)
        stopped_in = time.monotonic() - t0
        assert speaker.wait(1)
    assert stopped_in < 0.5, f"stop took {stopped_in:.2f} s (the utterance lasts {length:.0f} s)"


def test_speak_plays_in_real_time_and_repeat_says_it_again(audio_server: dict[str, str], tmp_path: Path) -> None:
    length = duration(say(tmp_path, EN, "en"))
    with Speaker(SpeechConfig(engine="espeak-ng"), env=audio_server) as speaker:
        t0 = time.monotonic()
        speaker.speak(EN)
        first = speaker.wait_started(5)
        assert speaker.wait(30), "the sentence was not finished in 30 s"
        took = time.monotonic() - t0
        assert first is not None and first.returncode == 0
        assert took > 0.8 * length, f"spoken in {took:.2f} s, the audio lasts {length:.2f} s: not played"
        assert speaker.last == EN
        assert speaker.repeat()
        again = speaker.wait_started(5)
        assert again is not None and again is not first
        assert isinstance(again.args, list) and again.args[-1] == EN
        assert speaker.wait(30)


def test_queued_sentences_play_one_after_another(audio_server: dict[str, str]) -> None:
    with Speaker(SpeechConfig(engine="espeak-ng", rate=400), env=audio_server) as speaker:
        speaker.speak("One.")
        speaker.speak("Два.", interrupt=False)
        first = speaker.wait_started(5)
        assert first is not None and isinstance(first.args, list) and first.args[-1] == "One."
        assert speaker.wait(30)
        assert first.returncode == 0  # not cut off by the queued one
        assert speaker.last == "Два."


# ------------------------------------------------------------------------------ sentence ends
def test_sentence_ends() -> None:
    text = "Dr. Smith met J. K. Rowling. It cost 3.5 euros! Правда? Т.е. всё… «Да.» Not yet"
    assert split_sentences(text) == ["Dr. Smith met J. K. Rowling.", "It cost 3.5 euros!", "Правда?",
                                     "Т.е. всё…", "«Да.»", "Not yet"]
    assert sentence_ends("Wait...") == [7]
    assert sentence_ends("See example.com now") == []


def test_sentence_watcher_hands_out_each_finished_sentence_once() -> None:
    w = SentenceWatcher()
    assert w.feed("Hello") == []
    assert w.feed("Hello there.") == ["Hello there."]
    assert w.feed("Hello there. Как") == []
    assert w.feed("Hello there. Как дела?") == ["Как дела?"]
    assert w.feed("Hello there. Как дела?") == []
    # going back into a spoken sentence: it is handed out again once finished
    assert w.feed("Hello there. Как") == []
    assert w.feed("Hello there. Как жизнь?") == ["Как жизнь?"]
    assert w.feed("") == []
    assert w.feed("New text.") == ["New text."]


# ---------------------------------------------------------------- speech-dispatcher, where it runs
@pytest.fixture(scope="module")
def speech_dispatcher(audio_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """A real speech-dispatcher server (Debian's, with its espeak-ng module) on the module's audio server,
    its socket where razvilka looks for it ($XDG_RUNTIME_DIR/speech-dispatcher/speechd.sock)."""
    server = _require("speech-dispatcher", "speech-dispatcher speech-dispatcher-espeak-ng")
    logs = Path(tempfile.mkdtemp(prefix="rz-spd-", dir="/tmp"))
    proc = subprocess.Popen([server, "-s", "-t", "0", "-L", str(logs)], env=audio_server,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not speechd_reachable(audio_server):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log = (logs / "speech-dispatcher.log")
            pytest.fail(f"speech-dispatcher did not start: {log.read_text()[-2000:] if log.exists() else ''}",
                        pytrace=False)
        time.sleep(0.05)  # the server has no readiness event: poll its socket
    yield audio_server
    end(proc)
    shutil.rmtree(logs, ignore_errors=True)


def stream_clients(env: dict[str, str]) -> list[str]:
    """The binaries with a stream on the audio server (the sink inputs' application.process.binary)."""
    out = subprocess.run(["pactl", "list", "sink-inputs"], env=env, capture_output=True, text=True, timeout=10)
    return re.findall(r'application\.process\.binary = "([^"]*)"', out.stdout)


def test_auto_speaks_through_a_running_speech_dispatcher_in_the_texts_language(
        speech_dispatcher: dict[str, str], tmp_path: Path) -> None:
    env = speech_dispatcher
    length = duration(say(tmp_path, RU, "ru"))
    assert choose_engine(SpeechConfig(), env) == "speech-dispatcher"
    with Speaker(SpeechConfig(), env=env) as speaker:
        t0 = time.monotonic()
        speaker.speak(RU)
        proc = speaker.wait_started(5)
        assert proc is not None and isinstance(proc.args, list)
        assert proc.args[:2] == ["spd-say", "-w"] and proc.args[proc.args.index("-l") + 1] == "ru"
        assert proc.wait(60) == 0
        took = time.monotonic() - t0
    # the server played it (speech-dispatcher 0.11 plays its modules' audio itself), in real time:
    # ``spd-say -w`` returns when the server has said it all
    assert "speech-dispatcher" in stream_clients(env), stream_clients(env)
    assert 0.5 * length < took < 3 * length + 2, (took, length)


def test_stop_silences_the_speech_dispatcher_server_too(speech_dispatcher: dict[str, str], tmp_path: Path) -> None:
    """After stop, the server says the next sentence at once: nothing of the long text is left before it."""
    env = speech_dispatcher
    short = duration(say(tmp_path, EN, "en"))
    assert duration(say(tmp_path, LONG, "long")) > 20
    with Speaker(SpeechConfig(engine="speech-dispatcher"), env=env) as speaker:
        speaker.speak(LONG)
        first = speaker.wait_started(5)
        assert first is not None
        wait_for_stream(env)
        speaker.stop()
        t0 = time.monotonic()
        speaker.speak(EN)
        again = speaker.wait_started(5)
        assert again is not None and again is not first and again.wait(60) == 0
        took = time.monotonic() - t0
    assert took < 3 * short + 2, f"the short sentence took {took:.1f} s: the long one was still being said"
