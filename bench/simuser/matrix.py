"""The configurations one benchmark run compares, over the same phrases.

Each is a daemon configuration (gating section) plus how the person behaves (phrases, more).
The classic word-prediction baseline is the same daemon and model with the system's extras off:
a fork at every word (no auto-write), no look-ahead, no phrases, no pre-generation.

The single-input people (``gaze-only``, ``switch-scan``, ``p300-only``) run the system's default
daemon and choose only targets on screen; their letters-only baselines (``switch-letters``,
``p300-letters``, beside ``letters``) need no daemon and are computed from the phrases.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# imported with bench/ on sys.path (bench/simulated_user.py and the tests put it there)
from simuser.driver import PersonOptions
from simuser.policy import PolicyOptions


def _default_thresholds() -> tuple[float, float]:
    from razvilka.daemon.config import GatingConfig

    g = GatingConfig()
    return g.max_entropy_bits, g.min_margin


@dataclass(frozen=True)
class BenchConfig:
    name: str
    kind: str                     # "wordpred" (baseline) or "system"
    k: int = 8
    mode: str = "auto"            # gating mode: "auto" writes on while confident, "always" forks at every word
    threshold: float = 1.0        # gating thresholds scaled like daemon/gating.py scales them per input:
                                  # entropy ceiling x t, margin floor / t (t > 1 writes on more, t < 1 forks more)
    lookahead: bool = True
    phrases: bool = True
    partial_phrases: bool = True  # a click on a look-ahead word takes the phrase up to it (protocol 1.1)
    more_pages: int = 0
    pregenerate: bool = True
    focus: bool = True            # the person focuses the wanted candidate (gaze/hover) before selecting
    lookahead_tokens: int = 6
    single: str = ""              # gaze | switch | p300: a single-input person (only targets on screen)

    def gating(self) -> dict[str, Any]:
        ent, margin = _default_thresholds()
        return {
            "mode": self.mode, "k": self.k, "max_entropy_bits": round(ent * self.threshold, 4),
            "min_margin": round(margin / self.threshold, 4),
            "lookahead_tokens": self.lookahead_tokens if self.lookahead else 0,
            # the long look-ahead is only shown, never committed; kept short, its arrival tells the
            # person that the focused candidate's pre-generation is done
            "long_lookahead_tokens": 1,
        }

    def daemon(self) -> dict[str, Any]:
        return {"pregenerate": self.pregenerate, "input_cost": "key"}

    def person(self, *, think_s: float, error: float = 0.0, seed: int = 0) -> PersonOptions:
        return PersonOptions(policy=PolicyOptions(phrases=self.phrases and self.lookahead,
                                                    partial_phrases=self.partial_phrases, more_pages=self.more_pages),
                             focus=self.focus, think_s=think_s, error=error, seed=seed, single=self.single)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "gating": self.gating(), "daemon": self.daemon()}


def wordpred(k: int) -> BenchConfig:
    return BenchConfig(f"wordpred-k{k}", "wordpred", k=k, mode="always", lookahead=False, phrases=False,
                       pregenerate=False, focus=False)


def system(k: int = 8, threshold: float = 1.0, **kw: Any) -> BenchConfig:
    suffix = "".join(f"-{name}" for name, on in (("nolookahead", not kw.get("lookahead", True)),
                                                  ("nophrases", not kw.get("phrases", True)),
                                                  ("wholephrases", not kw.get("partial_phrases", True))) if on)
    if kw.get("lookahead", True) and kw.get("lookahead_tokens", 6) != 6:
        suffix += f"-la{kw['lookahead_tokens']}"
    if kw.get("more_pages"):
        suffix += f"-more{kw['more_pages']}"
    t = "" if threshold == 1.0 else f"-t{threshold:g}"
    prefix = kw.get("mode", "auto")
    return BenchConfig(f"{prefix}-k{k}{t}{suffix}", "system", k=k, threshold=threshold, **kw)


def single(modality: str) -> BenchConfig:
    """A person with one input only, on the system's default daemon (auto-k8).

    Gaze focuses the wanted candidate and takes look-ahead phrases (the look-ahead is drawn beside
    the focused candidate); a scanning or P300 person takes candidates, keys and commands only, so
    their daemon computes no look-ahead (it would change no action)."""
    name = {"gaze": "gaze-only", "switch": "switch-scan", "p300": "p300-only"}[modality]
    gaze = modality == "gaze"
    return BenchConfig(name, "single", k=8, lookahead=gaze, phrases=gaze, focus=modality != "p300", single=modality)


#: The single-input people's letters-only baselines (computed from the phrases, no daemon), and the
#: modality each is costed with.
SINGLE_BASELINES = {"switch-letters": "switch", "p300-letters": "p300"}

HEADLINE = "auto-k8"
BASELINE = "wordpred-k8"


def matrix(name: str) -> list[BenchConfig]:
    """Named sets: "quick" (headline vs baseline), "full" (every variation the issue asks for), "extra",
    "single" (the single-input people against word prediction)."""
    if name == "quick":
        return [wordpred(8), system(8)]
    if name == "single":
        return [wordpred(8), single("gaze"), single("switch"), single("p300")]
    if name == "full":
        return [
            wordpred(4), wordpred(8), wordpred(12),
            system(4), system(8), system(12),
            system(8, 0.5), system(8, 2.0), system(8, 4.0),
            system(8, lookahead=False), system(8, phrases=False), system(8, partial_phrases=False),
            system(8, lookahead_tokens=1), system(8, lookahead_tokens=2), system(8, lookahead_tokens=3),
            system(4, lookahead_tokens=2), system(12, lookahead_tokens=2),
            system(8, mode="always"),
            system(8, more_pages=1),
            single("gaze"), single("switch"), single("p300"),
        ]
    if name == "extra":
        return [system(12, lookahead_tokens=1), system(12, lookahead_tokens=3)]
    raise ValueError(f"unknown configuration set {name!r} (quick, full, extra, single)")


def known() -> dict[str, BenchConfig]:
    """Every named configuration, for --configs."""
    return {c.name: c for c in matrix("full") + matrix("extra")}
