"""Quick phrases: the caregiver's TOML list (made with everyday phrases, 0600, when absent), the person's
most frequent sentences from the store, published as the retained ``phrases.state``; ``phrase:<id>``
on the real daemon says the phrase (espeak-ng on a real audio server), writes it into the text, or both."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from daemon_fixtures import DEFAULT_PROMPT, StartDaemon, next_of
from test_daemon_output import _spoken
from test_speech import audio_server, wait_for_stream  # noqa: F401 - the module's audio server

from razvilka.daemon.config import PhrasesConfig
from razvilka.daemon.errors import DaemonRefusal
from razvilka.daemon.phrases import DEFAULT_FILE, PhraseBook, frequent_phrases, phrases_path, read_quick
from razvilka.protocol.errors import ErrorCode
from razvilka.protocol.messages import (
    Command,
    Confirm,
    DaemonError,
    ForkDecided,
    ForkOpen,
    PhrasesState,
    Select,
    TextState,
)
from razvilka.protocol.targets import parse_target

PHRASES = '[phrases]\nyes = "Yes."\ntea = "Tea, please."\nspasibo = "Спасибо!"\n'


def test_the_file_is_made_with_everyday_phrases_private(tmp_path: Path) -> None:
    path = phrases_path(PhrasesConfig(), tmp_path / "razvilka" / "config.toml")
    assert path == tmp_path / "razvilka" / "phrases.toml"
    phrases = read_quick(path)
    assert path.read_text(encoding="utf-8") == DEFAULT_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.id for p in phrases][:3] == ["yes", "no", "thank-you"] and all(p.kind == "quick" for p in phrases)
    for p in phrases:
        assert parse_target(f"phrase:{p.id}").kind == "phrase"
    assert phrases_path(PhrasesConfig(file=str(tmp_path / "mine.toml")), tmp_path / "c.toml") == tmp_path / "mine.toml"


@pytest.mark.parametrize(("text", "names"), [
    ('[phrases]\nYes = "Yes."\n', "id 'Yes'"),
    ('[phrases]\nyes = ""\n', "yes: the phrase must be non-empty"),
    ('[phrases]\nyes = 3\n', "yes: the phrase must be non-empty"),
    ('[phrases\nyes = "Yes."\n', "is not valid TOML"),
    ('phrases = ["Yes."]\n', "[phrases] must be a table"),
])
def test_a_bad_file_is_bad_config_naming_the_file_and_entry(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "phrases.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DaemonRefusal) as err:
        read_quick(path)
    assert err.value.code == ErrorCode.BAD_CONFIG and str(path) in err.value.detail and names in err.value.detail


def test_frequent_sentences_are_counted_and_quick_ones_left_out() -> None:
    texts = ["I am tired. Could you open the window? Yes.", "Could you  open the window? I am tired.",
             "I am tired. Thank you!", "Thank you! Unfinished"]
    got = frequent_phrases(texts, 5, 2, exclude=["Thank you!"])
    assert [p.text for p in got] == ["I am tired.", "Could you open the window?"]
    assert all(p.kind == "frequent" and p.id.startswith("f-") for p in got)
    assert frequent_phrases(texts, 5, 2) != got and frequent_phrases(texts, 0, 1) == []
    assert frequent_phrases(texts, 1, 2)[0].id == got[0].id  # an id names the same sentence however the list changes


def test_an_edited_file_is_read_again_and_a_bad_edit_keeps_the_old_list(tmp_path: Path) -> None:
    path = tmp_path / "phrases.toml"
    path.write_text(PHRASES, encoding="utf-8")
    book = PhraseBook.load(path)
    assert not book.reread()
    path.write_text(PHRASES + 'bye = "Bye!"\n', encoding="utf-8")
    assert book.reread() and book.find("bye").text == "Bye!"
    path.write_text("[phrases\n", encoding="utf-8")
    with pytest.raises(DaemonRefusal):
        book.reread()
    assert book.find("bye").text == "Bye!"
    with pytest.raises(DaemonRefusal, match="no quick phrase 'nope'"):
        book.find("nope")


# ------------------------------------------------------------------------------ the real daemon
@pytest.mark.model
async def test_phrases_state_is_retained_and_counts_the_frequent_sentences(start_daemon: StartDaemon,
                                                                           runtime_dir: Path) -> None:
    (runtime_dir / "phrases.toml").write_text(PHRASES, encoding="utf-8")
    d = await start_daemon(phrases={"frequent_min": 2})
    bus = await d.client("t", ["fork.", "text.", "phrases."])
    snap = [m.body for m in await bus.snapshot() if m.type == PhrasesState.TYPE]
    assert len(snap) == 1 and isinstance(snap[0], PhrasesState)
    assert [(p.id, p.text, p.kind) for p in snap[0].phrases] == [
        ("yes", "Yes.", "quick"), ("tea", "Tea, please.", "quick"), ("spasibo", "Спасибо!", "quick")]
    for _ in range(2):  # the person writes the same sentence in two documents
        await next_of(bus, ForkOpen, 60)
        bus.publish(Command(command="new", source="t", text=""))
        await next_of(bus, TextState, 30, where=lambda m: m.body.text == "")
        await next_of(bus, ForkOpen, 60)
        bus.publish(Command(command="type", source="t", text="Open the window please. "))
        await next_of(bus, TextState, 30, where=lambda m: m.body.text == "Open the window please.")
    bus.publish(Command(command="new", source="t", text=""))
    state = await next_of(bus, PhrasesState, 30, where=lambda m: len(m.body.phrases) == 4)
    assert state.body.phrases[-1].text == "Open the window please." and state.body.phrases[-1].kind == "frequent"


@pytest.mark.model
async def test_a_phrase_target_speaks_and_inserts_it(start_daemon: StartDaemon, runtime_dir: Path,
                                                     audio_server: dict[str, str]) -> None:  # noqa: F811
    (runtime_dir / "phrases.toml").write_text(PHRASES, encoding="utf-8")
    d = await start_daemon(speech={"engine": "espeak-ng", "rate": 400}, phrases={"action": "both"},
                           build={"output_env": audio_server})
    bus = await d.client("t", ["fork.", "text.", "daemon.error."])
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Confirm(target="phrase:tea", source="gaze", kind="gaze"), fork_id=fork.header.fork_id)  # a dwell
    decided = await next_of(bus, ForkDecided, 30, where=lambda m: m.header.fork_id == fork.header.fork_id)
    assert decided.body.target == "phrase:tea" and decided.body.words == ["Tea,", "please."]
    assert decided.body.rule == "phrase" and decided.body.typed and decided.body.sources == ["gaze"]
    await next_of(bus, TextState, 30, where=lambda m: m.body.text == DEFAULT_PROMPT + " Tea, please.")
    said = await _spoken(d)
    assert isinstance(said.args, list) and said.args[-1] == "Tea, please."
    await asyncio.to_thread(wait_for_stream, audio_server)
    # an unknown phrase is refused by name; the daemon serves on
    fork = await next_of(bus, ForkOpen, 60)
    bus.publish(Select(target="phrase:nope", source="t"), fork_id=fork.header.fork_id)
    err = (await next_of(bus, DaemonError, 20)).body
    assert err.code == ErrorCode.BAD_VALUE and "no quick phrase 'nope'" in err.message
    # speak only: the text stays as it is and the fork stays open
    d.config.phrases.action = "speak"
    bus.publish(Command(command="phrase", source="t", text="spasibo"))
    again = await _spoken(d, said)
    assert isinstance(again.args, list) and again.args[-1] == "Спасибо!" and "-v" in again.args
    assert again.args[again.args.index("-v") + 1] == "ru"  # the Russian voice for a Cyrillic phrase
    bus.publish(Select(index=0, source="t"), fork_id=fork.header.fork_id)
    await next_of(bus, ForkDecided, 30, where=lambda m: m.header.fork_id == fork.header.fork_id)
