"""Fork gating: at each word boundary, write on or ask the human? (the rule and its reasons: docs/gating.md)

A pure function of the word distribution, the thresholds and the input in use, so the daemon, the
simulated-user benchmark and the tests all apply the very same rule.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from razvilka.daemon.config import GatingConfig
    from razvilka.daemon.engine import WordDistribution


def cost_weight(cfg: GatingConfig, cost: str) -> float:
    """How much one selection costs with this input, relative to a key press.

    A partial ``cost_weights`` table keeps the defaults for the inputs it does not name; an unknown
    input counts as a key.
    """
    from razvilka.daemon.config import _default_cost_weights

    w = cfg.cost_weights.get(cost, _default_cost_weights().get(cost, 1.0))
    return max(0.1, float(w))


def thresholds(cfg: GatingConfig, cost: str) -> tuple[float, float]:
    """(entropy ceiling, margin floor) for writing on with this input: a costlier input writes on more."""
    w = cost_weight(cfg, cost)
    return cfg.max_entropy_bits * w, cfg.min_margin / w


def should_fork(dist: WordDistribution, cfg: GatingConfig, cost: str, *, auto_words: int = 0) -> tuple[bool, str]:
    """(fork?, reason). Write on only when the model is sure by BOTH measures, for this input's cost.

    ``auto_words``: words written on since the last fork; at ``cfg.max_auto_words`` the human gets a
    fork anyway (0 disables that check here; the daemon may count on its own).
    """
    if cfg.mode == "always":
        return True, "always"
    if not dist.candidates:
        return True, "no candidates"
    if len(dist.candidates) == 1:
        return False, "only one word"
    if cfg.max_auto_words and auto_words >= cfg.max_auto_words:
        return True, f"max_auto_words ({cfg.max_auto_words})"
    h_max, m_min = thresholds(cfg, cost)
    w = cost_weight(cfg, cost)
    if dist.entropy_bits > h_max:
        return True, f"uncertain: entropy {dist.entropy_bits:.2f} > {h_max:.2f} bits ({cost} x{w:g})"
    if dist.margin < m_min:
        return True, f"close call: margin {dist.margin:.2f} < {m_min:.2f} ({cost} x{w:g})"
    return False, f"sure: entropy {dist.entropy_bits:.2f} <= {h_max:.2f} bits, margin {dist.margin:.2f} >= {m_min:.2f}"
