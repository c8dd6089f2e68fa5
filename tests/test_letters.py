"""The next letters of the on-screen keyboard (protocol 1.4 ``fork.open`` letters): P(next character |
typed prefix, the word is none of the shown candidates), read from the rows of the fork's own word
search, and the candidates' probabilities under a prefix as their share of all the mass the model
gives the prefix. On the real embedded model (the session's ``engine`` fixture), and the counting
rule alone by hand."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from razvilka.daemon.backends.topn import TopNBackend
from razvilka.daemon.engine import Engine, NextChars, WordCandidate, WordDistribution, letters_of
from razvilka.protocol.targets import char_script, is_key_char

INTO = "She walked down the hill and into"
WEEKEND = "My favourite thing about the weekend is"


def check(dist: WordDistribution, before: str) -> dict[str, float]:
    """The letters of ``dist``'s fork, checked to be keys (or " "), likeliest first, summing to at most 1 with
    the rest stated as uncovered; returned as a dict."""
    got = letters_of(dist, before, is_key_char)
    probs = [p for _, p in got.letters]
    assert probs == sorted(probs, reverse=True) and all(p > 0 for p in probs)
    assert 0 < sum(probs) <= 1.0 + 1e-9
    assert got.uncovered == pytest.approx(max(0.0, 1.0 - sum(probs)))
    assert all(is_key_char(ch) or ch == " " for ch, _ in got.letters)
    assert got.shown == pytest.approx(min(1.0, sum(c.prob for c in dist.candidates)), abs=1e-6)
    return dict(got.letters)


# ------------------------------------------------------------------------------------------- the rule alone
def test_letters_leave_out_the_shown_words_and_renormalise_over_the_rest() -> None:
    """Worked by hand: each shown word's mass (prob x total) leaves its next character; the rest is
    renormalised; non-key characters, glued pieces and what the walk did not resolve are uncovered."""
    chars = NextChars(mass={"t": 0.5, "a": 0.2, "1": 0.1}, other=0.2, total=1.0)

    def w(word: str, text: str, prob: float) -> WordCandidate:
        return WordCandidate(word=word, text=text, tokens=[], prob=prob)

    fork = WordDistribution([w("The", " The", 0.25), w("to", " to", 0.15), w("es", "es", 0.05)], 1.0, 0.1,
                            chars=chars)
    got = letters_of(fork, "Miss", is_key_char)
    # t: 0.5 - 0.25 - 0.15 = 0.1; a: 0.2; "1": no key; other: 0.2 - 0.05 (the glued "es") = 0.15
    rest = 0.1 + 0.2 + 0.1 + 0.15
    assert got.letters == [("a", pytest.approx(0.2 / rest)), ("t", pytest.approx(0.1 / rest))]
    assert got.uncovered == pytest.approx(0.25 / rest) and got.shown == pytest.approx(0.45)
    # under a prefix the word that is the prefix itself ends it: its mass leaves " "
    typed = NextChars(mass={"e": 0.3, " ": 0.1, "y": 0.05}, other=0.05, total=0.5)
    under = WordDistribution([w("th", " th", 0.2), w("the", " the", 0.4)], 1.0, 0.2, prefix="th", chars=typed)
    got = letters_of(under, "of", is_key_char)
    assert got.letters == [("e", pytest.approx(0.5)), ("y", pytest.approx(0.25))]  # of 0.1 + 0.05 + 0.05
    assert got.shown == pytest.approx(0.6)
    # no walk (the typed word alone, offered when no word starts so): no letters, nothing claimed
    assert letters_of(replace(under, chars=None), "of").letters == []


# ------------------------------------------------------------------------------------------- the real model
@pytest.mark.model
def test_a_letter_whose_mass_came_only_from_shown_words_drops(engine: Engine) -> None:
    """After "into" + "the", the word "the" itself is offered: " " (the word ends here) then has nothing
    left, while the letters of the words the fork does not show ("they're", "thereby"...) stay."""
    engine.reset(INTO)
    engine.clear_cache()
    fork = engine.words(8, prefix="the")
    assert "the" in [c.word for c in fork.candidates]
    everything = check(replace(fork, candidates=[]), engine.text)  # the same rows, no word taken out
    assert everything.get(" ", 0.0) > 0.1, everything  # "the" is likely as it stands
    unshown = check(fork, engine.text)
    assert unshown.get(" ", 0.0) < 1e-3, unshown
    assert dict(engine.letters("the", k=8, is_key=is_key_char).letters) == unshown  # the fork's own search
    # each letter lost exactly the shown words' mass at it (prob x total), then the rest was renormalised
    chars = fork.chars
    assert chars is not None and chars.unseen == 0.0  # full rows: nothing unseen
    taken = dict.fromkeys(everything, 0.0)
    for c in fork.candidates:
        ch = c.word[3].lower() if len(c.word) > 3 else " "
        taken[ch] = taken.get(ch, 0.0) + c.prob * chars.total
    left = chars.total * (1 - sum(c.prob for c in fork.candidates))
    for ch, p in unshown.items():
        assert p * left == pytest.approx(max(0.0, everything[ch] * chars.total - taken.get(ch, 0.0)), abs=1e-6)


@pytest.mark.model
def test_under_a_prefix_the_candidates_keep_their_share_and_the_letters_the_rest(engine: Engine) -> None:
    """The candidates' probabilities under a prefix are their share of ALL the mass the model gives the
    prefix (not renormalised over the words found), so a wider search leaves them as they are and their
    sum is the chance the word is on screen; the letters cover the rest."""
    engine.reset(WEEKEND)
    engine.clear_cache()
    narrow = engine.words(8, prefix="s")
    # no cost: the letters of the fork's own search are counted from the rows it already read
    decodes = engine.stats["decodes"]
    assert engine.letters("s", k=8, is_key=is_key_char).letters
    assert engine.stats["decodes"] == decodes
    engine.clear_cache()
    wide = engine.words(16, prefix="s")
    shown = sum(c.prob for c in narrow.candidates)
    assert 0.3 < shown < 0.99, narrow.candidates
    assert sum(c.prob for c in wide.candidates) > shown
    same = {c.word: c.prob for c in wide.candidates}
    for c in narrow.candidates:
        assert c.prob == pytest.approx(same[c.word], rel=0.05), (c.word, c.prob, same.get(c.word))
    letters = check(narrow, engine.text)
    assert letters and max(letters.values()) > 0.05


@pytest.mark.model
def test_no_prefix_ranks_first_letters_of_the_words_not_shown(engine: Engine) -> None:
    engine.reset(WEEKEND)
    fork = engine.words(8)
    letters = check(fork, engine.text)
    assert len(letters) >= 10  # many words start the next one; the shown eight are a part of them
    assert fork.chars is not None and fork.chars.total == 1.0


@pytest.mark.model
def test_a_prefix_inside_a_token_and_over_several_tokens(engine: Engine) -> None:
    """"th" ends inside " the", " that"...; "xyl" runs over several tokens: their next characters come from
    the text after the prefix inside a token, or from the row after a path that ends on it."""
    engine.reset(INTO)
    letters = check(engine.words(8, prefix="th"), engine.text)
    assert "e" in sorted(letters, key=lambda ch: -letters[ch])[:3], letters
    engine.reset("The instrument with wooden bars is a")
    letters = check(engine.words(8, prefix="xyl"), engine.text)
    assert max(letters, key=lambda ch: letters[ch]) == "o", letters


@pytest.mark.model
def test_cyrillic_text_gives_cyrillic_letters(engine: Engine) -> None:
    engine.reset("Я пошёл в магазин и купил свежий")
    dist = engine.letters("", k=8, is_key=is_key_char)
    top = [ch for ch, _ in dist.letters[:5] if ch != " "]
    assert top and all(char_script(ch) == "cyrillic" for ch in top), dist.letters
    under = engine.letters("хл", k=8, is_key=is_key_char)
    assert under.letters and all(char_script(ch) == "cyrillic" for ch, _ in under.letters if ch != " "), under.letters


@pytest.fixture
def top(engine: Engine) -> Iterator[Engine]:
    """A second engine on the session's backend, seeing it through rows of its 40 likeliest tokens."""
    eng = Engine(engine.cfg, backend=TopNBackend(engine.backend, 40))
    try:
        yield eng
    finally:
        eng.close()
        engine.clear_cache()
        engine.reset("")


@pytest.mark.model
def test_top_n_rows_state_the_mass_they_did_not_show(top: Engine) -> None:
    """From top-N rows (a server's) the letters say how much of the rest the rows hid, with and without a
    prefix. Under a prefix a root row of 40 tokens shows few that agree with it ("s": " spending", " seeing"),
    so the unseen share is large: the letters are the shown rows' best guess and say so."""
    top.reset(WEEKEND)
    free = top.letters("", k=8, is_key=is_key_char)
    assert free.letters and 0 < free.unseen <= 1 and sum(p for _, p in free.letters) <= 1 + 1e-9
    typed = top.letters("s", k=8, is_key=is_key_char)
    assert 0.5 < typed.unseen <= 1 and sum(p for _, p in typed.letters) <= 1 + 1e-9, typed
