"""Token classes at word boundaries and prefix look-up (pure: token pieces in, no model)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from razvilka.daemon.words import Kind, Vocab, classify, display_word, head_words, joins, trim_to_words

PIECES = [b"", b" the", b"ate", b"'", b"'t", b",", b" ,", b"\n", b"\n\n", b"  ", b" pomegran", b"my",
          b"\xc3", b"\xa9", b"-based", b"...", b" sh", b" shop", b"sh", b"op", b" s", b"\xe2\x80\x99", b"<b>"]


def test_classes() -> None:
    kinds = {p: classify(p) for p in PIECES}
    assert kinds[b""] == Kind.MASKED
    assert kinds[b" the"] == kinds[b" pomegran"] == kinds[b" sh"] == Kind.WORD_START
    assert kinds[b"ate"] == kinds[b"'t"] == kinds[b"my"] == kinds[b"-based"] == Kind.WORD_CONT
    assert kinds[b"\xc3"] == kinds[b"\xa9"] == Kind.WORD_CONT  # bytes of a split character stay in the word
    assert kinds[b"'"] == kinds[b"\xe2\x80\x99"] == Kind.JOINER
    assert kinds[b","] == kinds[b"..."] == kinds[b"<b>"] == Kind.PUNCT
    assert kinds[b" ,"] == Kind.SPACE_PUNCT
    assert kinds[b"\n"] == kinds[b"\n\n"] == Kind.NEWLINE
    assert kinds[b"  "] == Kind.SPACE
    assert display_word(" world") == "world" and display_word("\n") == "\n"


def test_prefix_matching_and_masks(tmp_path: Path) -> None:
    v = Vocab(PIECES, masked=[p == b"<b>" for p in PIECES])
    ids = lambda rest: sorted(PIECES[i] for i in v.matching(rest))  # noqa: E731
    assert ids(b" sh") == [b" s", b" sh", b" shop"]      # start with it, or it starts with them
    assert ids(b" shop") == [b" s", b" sh", b" shop"]
    assert ids(b"sho") == [b"sh"]
    assert ids(b"<") == []                                # masked tokens never match
    assert v.cont[PIECES.index(b"ate")] and v.joiner[PIECES.index(b"'")] and not v.grows[PIECES.index(b",")]
    path = tmp_path / "v.npz"
    v.save(path)
    w = Vocab.load(path)
    assert w is not None and w.pieces == v.pieces and np.array_equal(w.kind, v.kind)
    assert sorted(w.matching(b" sh")) == sorted(v.matching(b" sh"))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert Vocab.load(tmp_path / "bad.npz") is None


def test_trim_to_words() -> None:
    v = Vocab(PIECES)
    t = {p: i for i, p in enumerate(PIECES)}
    run = [t[b" the"], t[b" pomegran"], t[b"ate"], t[b","], t[b" the"], t[b" pomegran"]]
    assert v.text(trim_to_words(v, run)) == " the pomegranate, the"   # the last word may go on: cut
    assert trim_to_words(v, [t[b" pomegran"], t[b"ate"]]) == [t[b" pomegran"], t[b"ate"]]  # one word stays


def test_head_words_cuts_a_look_ahead_where_a_person_sees_words() -> None:
    v = Vocab(PIECES)
    t = {p: i for i, p in enumerate(PIECES)}
    run = [t[b" the"], t[b" pomegran"], t[b"ate"], t[b","], t[b" the"], t[b" shop"]]
    assert head_words(v, run, 1) == (" the", [t[b" the"]])
    # "pomegranate," is one word to the eye: the comma goes with it, token for token
    assert head_words(v, run, 2) == (" the pomegranate,", run[:4])
    assert head_words(v, run, 3) == (" the pomegranate, the", run[:5])
    assert head_words(v, run, 4) == (v.text(run), run)     # all of it
    assert head_words(v, run, 9) == (v.text(run), run)     # past the end: all of it
    the_my = [t[b" the"], t[b"\n"], t[b"my"]]
    assert head_words(v, [*the_my, t[b" shop"]], 2) == (" the\nmy", the_my)
    # a cut inside a token: the text, and no tokens (the daemon tokenizes it)
    w = Vocab(PIECES + [b"op the"])
    assert head_words(w, [t[b" sh"], len(PIECES), t[b" shop"]], 1) == (" shop", [])
    glued = [t[b" the"], t[b" sh"], t[b"op"], t[b" ,"], t[b" s"]]
    assert head_words(v, glued, 2) == (" the shop", glued[:3])


def test_joins_is_a_piece_that_continues_the_word_before() -> None:
    assert joins("the elder Miss", "es")          # "Misses"
    assert joins("Mr Darcy", "'s")                # "Darcy's": a joiner then a letter
    assert joins("a well", "-known")
    assert joins("naïve", "té")                   # any letters, not only ASCII
    assert not joins("the elder Miss", " Bennet")  # a spaced word starts a new one
    assert not joins("Mr Darcy", ",")             # punctuation attaches, but makes no longer word
    assert not joins("a well", "-")               # a joiner alone is not (yet) a word
    assert not joins("Dear Anna,\n", "thank")     # at a line start
    assert not joins("the end. ", "The")
    assert not joins("", "Once")                  # an empty document
    assert not joins("Miss", "")
