"""Fork gating: the rule on real model output (sure / unsure text), and how input cost moves it."""
from __future__ import annotations

import pytest

from razvilka.cli import main
from razvilka.config import ConfigError, from_dict
from razvilka.daemon.config import GatingConfig
from razvilka.daemon.engine import Engine, WordCandidate, WordDistribution
from razvilka.daemon.gating import cost_weight, should_fork, thresholds

COSTS = ["key", "switch", "gaze", "eeg"]


def dist(entropy: float, probs: list[float]) -> WordDistribution:
    cands = [WordCandidate(f"w{i}", f" w{i}", [i], p) for i, p in enumerate(probs)]
    return WordDistribution(cands, entropy, probs[0] - (probs[1] if len(probs) > 1 else 0.0))


def test_costlier_inputs_fork_less() -> None:
    cfg = GatingConfig()
    assert [cost_weight(cfg, c) for c in COSTS] == sorted(cost_weight(cfg, c) for c in COSTS)
    ents = [thresholds(cfg, c)[0] for c in COSTS]
    margins = [thresholds(cfg, c)[1] for c in COSTS]
    assert ents == sorted(ents) and margins == sorted(margins, reverse=True)
    grid = [dist(h / 2, [p, (1 - p) / 2, (1 - p) / 4]) for h in range(0, 16) for p in (0.3, 0.45, 0.6, 0.75, 0.9)]
    forks = [sum(should_fork(d, cfg, c)[0] for d in grid) for c in COSTS]
    assert forks == sorted(forks, reverse=True) and forks[0] > forks[-1]
    # a distribution that a key user is asked about but an EEG user is not
    mid = dist(3.0, [0.55, 0.3, 0.1])
    assert should_fork(mid, cfg, "key")[0] and not should_fork(mid, cfg, "eeg")[0]


def test_always_mode_and_limits() -> None:
    sure = dist(0.1, [0.97, 0.01])
    assert not should_fork(sure, GatingConfig(), "key")[0]
    fork, reason = should_fork(sure, GatingConfig(mode="always"), "eeg")
    assert fork and reason == "always"
    fork, reason = should_fork(sure, GatingConfig(max_auto_words=3), "key", auto_words=3)
    assert fork and "max_auto_words" in reason
    assert should_fork(WordDistribution([], 0.0, 0.0), GatingConfig(), "key") == (True, "no candidates")
    tie = dist(0.9, [0.49, 0.48])  # low entropy but a toss-up: the margin catches it
    fork, reason = should_fork(tie, GatingConfig(), "eeg")
    assert fork and "margin" in reason
    spread = dist(6.0, [0.6, 0.02])  # a clear winner among many small ones: entropy catches it
    fork, reason = should_fork(spread, GatingConfig(), "key")
    assert fork and "entropy" in reason


def test_thresholds_are_configurable_from_config() -> None:
    cfg = from_dict({"gating": {"max_entropy_bits": 1.0, "min_margin": 0.9, "cost_weights": {"eeg": 8.0}}}).gating
    assert cost_weight(cfg, "eeg") == 8.0 and cost_weight(cfg, "gaze") == 2.0  # a partial table keeps the defaults
    assert thresholds(cfg, "key") == (1.0, 0.9)
    assert should_fork(dist(0.5, [0.85, 0.05]), cfg, "key")[0]            # strict for keys...
    assert not should_fork(dist(0.5, [0.85, 0.05]), cfg, "eeg")[0]        # ...loose for EEG
    assert cost_weight(cfg, "telepathy") == 1.0


@pytest.mark.parametrize("k", [0, -2])
def test_fewer_than_one_candidate_is_a_config_error_naming_the_key(k: int, capsys: pytest.CaptureFixture[str]) -> None:
    """``--set gating.k=0`` would open forks with nothing to choose: refused before anything starts."""
    with pytest.raises(ConfigError) as err:
        from_dict({"gating": {"k": k}})
    assert "gating.k" in str(err.value) and ">= 1" in str(err.value)
    assert main(["--set", f"gating.k={k}", "daemon", "--prompt", "x"]) == 2
    assert "gating.k" in capsys.readouterr().err
    assert from_dict({"gating": {"k": 1}}).gating.k == 1


@pytest.mark.model
@pytest.mark.parametrize("prompt", ["Thank you very", "Once upon a", "The United States of"])
def test_model_sure_writes_on(engine: Engine, prompt: str) -> None:
    engine.reset(prompt)
    d = engine.words(8)
    for cost in COSTS:
        fork, reason = should_fork(d, GatingConfig(), cost)
        assert not fork and reason.startswith("sure"), (cost, reason)
    assert should_fork(d, GatingConfig(mode="always"), "key")[0]


@pytest.mark.model
@pytest.mark.parametrize("prompt", ["My favourite thing about the weekend is", "I went to the", "New York"])
def test_model_unsure_forks_for_every_input(engine: Engine, prompt: str) -> None:
    engine.reset(prompt)
    d = engine.words(8)
    for cost in COSTS:
        fork, reason = should_fork(d, GatingConfig(), cost)
        assert fork, (cost, reason)


@pytest.mark.model
def test_model_in_between_depends_on_the_input(engine: Engine) -> None:
    """Celsius 0.5 vs Fahrenheit 0.2: worth a key press, not a P300 round."""
    engine.reset("Water boils at 100 degrees")
    d = engine.words(8)
    assert d.candidates[0].word == "Celsius"
    assert should_fork(d, GatingConfig(), "key")[0]
    assert not should_fork(d, GatingConfig(), "eeg")[0]
