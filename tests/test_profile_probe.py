"""bench/profile_probe.py's scoring: the word-by-word person and the history it builds (no model)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from profile_probe import CEILINGS, Word, actions, score  # noqa: E402

from razvilka.daemon.engine import WordCandidate, WordDistribution  # noqa: E402


def dist(words: list[str], prefix: str = "") -> WordDistribution:
    n = len(words)
    cands = [WordCandidate(w, " " + w, [i], (n - i) / (n * (n + 1) / 2)) for i, w in enumerate(words)]
    return WordDistribution(cands, 2.0, 0.1, prefix, coverage=0.9, top_prob=cands[0].prob)


def plain(d: WordDistribution) -> list[str]:
    return [c.word for c in d.candidates]


def test_actions_select_letters_or_the_whole_word() -> None:
    offered = Word(0, "It was", "a", dist(["a", "the", "not"]))
    assert actions(offered, plain, k=2) == (1, True)
    after_two = Word(0, "It was", "cold", dist(["a", "the"]),
                     {"c": dist(["cat", "can"], "c"), "co": dist(["cold", "come"], "co")})
    assert actions(after_two, plain, k=2) == (3, False)  # two letters, then select
    assert actions(after_two, plain, k=1) == (3, False)
    never = Word(0, "It was", "cold", dist(["a", "the"]), {"c": dist(["cat", "can"], "c")})
    assert actions(never, plain, k=2) == (5, False)  # its four letters and a space


def test_a_history_word_the_engine_misses_saves_actions() -> None:
    # the person always writes "Darcy" after "Mr"; the engine never lists it
    first = [Word(i, f"Note {i} Mr", "Darcy", dist(["Bennet", "Bingley"])) for i in range(6)]
    later = [Word(100, "and Mr", "Darcy", dist(["Bennet", "Bingley"]),
                  {"D": dist(["Dan", "Dean"], "D"), "Da": dist(["Dan", "Dane"], "Da"),
                   "Dar": dist(["Dart", "Darby"], "Dar"), "Darc": dist(["Darcy", "Darcey"], "Darc")})]
    data = {"first": first, "dev": later, "test": later}
    engine = score(data, 6, "engine", k=2)
    profile = score(data, 6, "profile", k=2)
    assert engine["test"]["actions_per_word"] == 5  # four letters, then select
    assert profile["test"]["actions_per_word"] == 1 and profile["test"]["recall_at_k"] == 1


def test_ceilings_show_2k_words_the_engines_or_the_caches() -> None:
    first = [Word(i, f"Note {i} Mr", "Darcy", dist(["Bennet", "Bingley"])) for i in range(6)]
    deep = Word(100, "and Mr", "Wickham", dist(["Bennet", "Bingley", "Collins", "Wickham"]),
                {"W": dist(["Wickham", "Williams"], "W")})
    darcy = Word(101, "and Mr", "Darcy", dist(["Bennet", "Bingley", "Collins", "Wickham"]),
                 {"D": dist(["Dan", "Dean"], "D"), "Da": dist(["Darcy", "Dane"], "Da")})
    data = {"first": first, "dev": [deep, darcy], "test": [deep, darcy]}
    engine = score(data, 6, "engine", k=2)["test"]
    wide = score(data, 6, CEILINGS[0], k=2)["test"]      # 4 of the engine's words: Wickham is 4th
    cache = score(data, 6, CEILINGS[1], k=2)["test"]     # 2 of the engine's + 2 of the cache's: Darcy
    assert engine["actions_per_word"] == (2 + 3) / 2
    assert wide["actions_per_word"] == (1 + 3) / 2
    assert cache["actions_per_word"] == (2 + 1) / 2
