"""A sensible start: an empty document opens with words, not markup or code, on the real model; the
framing is read by the model but is not the person's text; ``gating.keep_markup`` turns the filter off."""
from __future__ import annotations

from pathlib import Path

import pytest
from daemon_fixtures import StartDaemon, next_of

from razvilka.daemon.engine import WordCandidate, WordDistribution
from razvilka.daemon.prose import PREAMBLES, dialogue, framing, is_markup, with_framing, without_markup
from razvilka.daemon.store import Turn
from razvilka.protocol.messages import Command, ConfigState, ConfigUpdate, ForkOpen

#: A prompt after which the model goes on in HTML
HTML_PROMPT = "<html>\n<body>\n"


def _markup_free(words: list[str]) -> bool:
    return not any(w.strip().startswith("<") or w.strip() in ("import", "package", "{", "#") for w in words)


# ------------------------------------------------------------------------------ the rules, without a model
@pytest.mark.parametrize("word", ["<h1>", "<strong>", "</", "<?", "{", "}", "`code`", "#include", "**", "[",
                                  "print(x)", "a->b", "foo_bar", "x=1", "\ufeff", "//", "&nbsp;"])
def test_markup_and_code_are_recognised(word: str) -> None:
    assert is_markup(word, "")


@pytest.mark.parametrize("word", ["The", "I", "don't", "well-known", "e.g.", "3.5", "$5", "“", "(", "...", "—",
                                  "привет", "\n", "Import", "100%"])
def test_prose_words_are_kept(word: str) -> None:
    assert not is_markup(word, "")


def test_code_keywords_count_only_where_a_line_of_code_would_start() -> None:
    assert is_markup("import", "") and is_markup("import", "Some text.\n")
    assert not is_markup("import", "The cars we")  # "the cars we import": a verb in prose


def test_without_markup_keeps_the_order_and_recomputes_the_margin() -> None:
    def cand(word: str, prob: float) -> WordCandidate:
        return WordCandidate(word=word, text=word, tokens=[], prob=prob)
    dist = WordDistribution(candidates=[cand("<h1>", 0.4), cand("The", 0.3), cand("import", 0.2), cand("I", 0.1)],
                            entropy_bits=5.0, margin=0.1)
    kept, removed = without_markup(dist, "")
    assert [c.word for c in kept.candidates] == ["The", "I"] and removed == ["<h1>", "import"]
    assert kept.margin == pytest.approx(0.2) and kept.top_prob == pytest.approx(0.3)


def test_framing_is_the_dialogue_or_the_preamble() -> None:
    assert framing("", [], prose=True) == PREAMBLES["latin"]
    assert framing("", [], prose=True, script="cyrillic") == PREAMBLES["cyrillic"]
    assert framing("", [], prose=False) == "" and framing("Dear Anna,", [], prose=True) == ""
    turns = [Turn("person", "I am  fine."), Turn("partner", "Tea?")]
    assert dialogue(turns) == "Me: I am fine.\nPartner: Tea?\nMe:"
    assert framing("", turns, prose=True) == dialogue(turns)
    assert framing("Yes", turns, prose=True) == dialogue(turns) + "\n"  # a prompt starts on its own line
    assert dialogue([Turn("partner", "Чай или кофе?")]) == "Собеседник: Чай или кофе?\nЯ:"
    assert with_framing("Earlier text.", "Me:") == "Earlier text.\n\nMe:" and with_framing("", "Me:") == "Me:"


# ------------------------------------------------------------------------------ the real model
@pytest.mark.model
async def test_an_empty_document_first_offers_words_not_markup(start_daemon: StartDaemon) -> None:
    d = await start_daemon(daemon={"prompt": ""}, gating={"k": 8})
    bus = await d.client("t", ["fork.", "text."])
    fork = await next_of(bus, ForkOpen, 60)
    words = [c.word for c in fork.body.candidates]
    assert len(words) == 8, words
    assert _markup_free(words) and not any(is_markup(w, "") for w in words), words
    assert sum(any(ch.isalpha() for ch in w) for w in words) >= 6, words  # words, not punctuation
    assert fork.body.context == ""  # the preamble is the model's reading, not the person's text
    assert d.daemon.engine is not None and d.daemon.engine.text == ""
    # without the framing and the filter the same model opens with markup: what the issue saw
    engine = d.daemon.engine
    await d.daemon._eng(engine.reset, "", "")
    raw = [c.word for c in (await d.daemon._eng(engine.words, 8)).candidates]
    assert not _markup_free(raw), f"the bare model no longer offers markup first ({raw}): update this test"


@pytest.mark.model
async def test_keep_markup_turns_the_filter_off(start_daemon: StartDaemon, tmp_path: Path) -> None:
    d = await start_daemon(daemon={"prompt": HTML_PROMPT}, gating={"k": 8},
                           build={"config_file": tmp_path / "config.toml"})
    bus = await d.client("t", ["fork.", "config.state."])
    words = [c.word for c in (await next_of(bus, ForkOpen, 60)).body.candidates]
    assert words and not any(is_markup(w, HTML_PROMPT) for w in words), words
    bus.publish(ConfigUpdate(section="gating", key="keep_markup", value=True, source="t"))
    await next_of(bus, ConfigState, 10, where=lambda m: m.body.changed == "gating.keep_markup")
    bus.publish(Command(command="regenerate", source="t"))
    words = [c.word for c in (await next_of(bus, ForkOpen, 60)).body.candidates]
    assert any(is_markup(w, HTML_PROMPT) for w in words), words
