"""Engine.letters: P(next character | typed prefix) from the fork's word search (protocol 1.4 fork.open
letters), on the real embedded model (the session's ``engine`` fixture)."""
from __future__ import annotations

import pytest

from razvilka.daemon.engine import Engine, WordCandidate, letters_of
from razvilka.protocol.targets import char_script, is_key_char

pytestmark = pytest.mark.model


def test_after_th_e_is_a_top_letter_and_the_mass_adds_up(engine: Engine) -> None:
    engine.reset("She walked down the hill and into")
    dist = engine.letters("th", k=16, is_key=is_key_char)
    chars = [ch for ch, _ in dist.letters]
    assert "e" in chars[:3], dist.letters
    total = sum(p for _, p in dist.letters)
    assert 0 < total <= 1.0 + 1e-6
    assert dist.uncovered == pytest.approx(max(0.0, 1.0 - total))
    assert [p for _, p in dist.letters] == sorted((p for _, p in dist.letters), reverse=True)
    assert all(is_key_char(ch) or ch == " " for ch in chars)
    assert dist.prefix == "th" and dist.words >= 1


def test_no_prefix_counts_first_letters_and_reports_the_rest_as_uncovered(engine: Engine) -> None:
    engine.reset("My favourite thing about the weekend is")
    words = engine.words(8)
    dist = engine.letters("", k=8)  # the fork's own search: cached, and the same words
    assert dist.words <= len(words.candidates)
    first = {c.word[0].lower() for c in words.candidates if c.word[:1].isalpha()}
    assert {ch for ch, _ in dist.letters} == first
    # with no prefix the words' probabilities are absolute: what 8 words do not cover is said
    assert dist.uncovered >= 1.0 - words.coverage - 1e-6 and dist.uncovered > 0


def test_cyrillic_text_gives_cyrillic_letters(engine: Engine) -> None:
    engine.reset("Я пошёл в магазин и купил свежий")
    dist = engine.letters("", k=16, is_key=is_key_char)
    top = [ch for ch, _ in dist.letters[:5] if ch != " "]
    assert top and all(char_script(ch) == "cyrillic" for ch in top), dist.letters
    under = engine.letters("хл", k=16, is_key=is_key_char)
    assert under.letters and all(char_script(ch) == "cyrillic" for ch, _ in under.letters if ch != " "), under.letters


def test_letters_of_folds_case_ends_words_and_skips_glued_pieces() -> None:
    """The counting rule alone (no model): 'The' counts for t, the prefix itself for ' ', a glued piece for nothing."""
    def w(word: str, text: str, prob: float) -> WordCandidate:
        return WordCandidate(word=word, text=text, tokens=[], prob=prob)

    cands = [w("The", " The", 0.25), w("to", " to", 0.25), w("es", "es", 0.125), w("42", " 42", 0.125)]
    dist = letters_of(cands, "", "Miss", is_key_char)
    assert dist.letters == [("t", 0.5)] and dist.uncovered == pytest.approx(0.5) and dist.words == 2
    typed = letters_of([w("the", " the", 0.5), w("th", " th", 0.25), w("thy", " thy", 0.25)], "th", "of", is_key_char)
    assert typed.letters == [("e", 0.5), (" ", 0.25), ("y", 0.25)]
