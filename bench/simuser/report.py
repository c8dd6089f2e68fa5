"""The table, the plots (matplotlib, imported only here) and the headline ratios of one run."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = [
    # (header, key, format)
    ("config", "name", "{}"),
    ("KSR", "ksr", "{:.1%}"),
    ("act/char", "actions_per_char", "{:.3f}"),
    ("act/word", "actions_per_word", "{:.2f}"),
    ("spelled", "spelled_words", "{}"),
    ("fork rate", "fork_rate", "{:.1%}"),
    ("auto err", "auto_error_rate", "{:.1%}"),
    ("backs", "backs", "{}"),
    ("right undone", "undone_right", "{}"),
    ("phrases", "phrase_selections", "{}"),
    ("WPM key", "wpm_key", "{:.1f}"),
    ("WPM foot", "wpm_foot", "{:.1f}"),
    ("WPM gaze", "wpm_gaze", "{:.1f}"),
    ("WPM switch", "wpm_switch", "{:.2f}"),
    ("WPM P300", "wpm_p300", "{:.2f}"),
    ("fork ms", "fork_compute_ms_mean", "{:.0f}"),
    ("look-ahead ms", "lookahead_compute_ms_mean", "{:.0f}"),
    ("pregen hit", "pregen_hit_share", "{:.0%}"),
    ("done", "done", "{}"),
]


def _cell(fmt: str, value: Any) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """One line per configuration; ``markdown`` for docs/performance.md."""
    cells = [[h for h, _, _ in COLUMNS]] + [[_cell(f, r.get(k)) for _, k, f in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in cells)


def headline(by_name: Mapping[str, Mapping[str, Any]], system: str, baseline: str) -> dict[str, Any]:
    """The issue's two targets, measured: actions-per-character ratio and the system's KSR."""
    out: dict[str, Any] = {"system": system, "baseline": baseline}
    s, b = by_name.get(system), by_name.get(baseline)
    if s and b and s["actions_per_char"]:
        out["fewer_actions_ratio"] = b["actions_per_char"] / s["actions_per_char"]
        out["target_ratio"] = 1.3
        out["ratio_met"] = out["fewer_actions_ratio"] >= 1.3
    if s:
        out["ksr"] = s["ksr"]
        out["target_ksr"] = 0.65
        out["ksr_met"] = s["ksr"] >= 0.65
    if b:
        out["baseline_ksr"] = b["ksr"]
    return out


#: The single-input targets (issue 16): (configuration, modality column, baseline row, target).
#: gaze-only has an absolute target (WPM), the others a ratio to their letters-only baseline.
SINGLE_TARGETS = (
    ("gaze-only", "wpm_gaze", "", 20.0),
    ("switch-scan", "wpm_switch", "switch-letters", 2.0),
    ("p300-only", "wpm_p300", "p300-letters", 3.0),
)


def single_targets(by_name: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each single-input configuration that ran against its target, with every phrase finished."""
    out: dict[str, Any] = {}
    for name, key, base, target in SINGLE_TARGETS:
        row = by_name.get(name)
        if not row or row.get(key) is None:
            continue
        v: dict[str, Any] = {"wpm": row[key], "column": key, "target": target,
                             "done": row["done"], "phrases": row["phrases"], "spelled_words": row.get("spelled_words"),
                             "actions_per_word": row["actions_per_word"]}
        if base:
            b = by_name.get(base, {}).get(key)
            v["baseline"], v["baseline_wpm"] = base, b
            v["ratio"] = row[key] / b if b else None
            v["met"] = v["ratio"] is not None and v["ratio"] >= target
        else:
            v["met"] = row[key] >= target
        v["all_done"] = row["done"] == row["phrases"]
        out[name] = v
    return out


def single_line(name: str, v: Mapping[str, Any]) -> str:
    """One printed line: the configuration's WPM against its target."""
    done = f"{v['done']}/{v['phrases']} phrases finished, {v['spelled_words']} words spelled out"
    if v.get("baseline"):
        ratio = v.get("ratio")
        return (f"{name}: {v['wpm']:.2f} WPM = {ratio:.2f}x {v['baseline']} ({v['baseline_wpm']:.2f}) "
                f"(target >= {v['target']:g}x: {'met' if v['met'] else 'NOT met'}); {done}")
    return f"{name}: {v['wpm']:.1f} WPM (target >= {v['target']:g}: {'met' if v['met'] else 'NOT met'}); {done}"


def plots(rows: Sequence[Mapping[str, Any]], configs: Mapping[str, Mapping[str, Any]], out_dir: Path,
          letters: Mapping[str, Any] | None = None) -> list[Path]:
    """KSR and WPM against K (system and word prediction) and against the gating threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    by = {r["name"]: r for r in rows}
    written: list[Path] = []

    def series(pred: Callable[[Mapping[str, Any]], bool]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
        """(configuration, result row) of the configurations that pred picks and that ran."""
        return [(c, by[n]) for n, c in configs.items() if n in by and pred(c)]

    def k_of(c: Mapping[str, Any]) -> float:
        return float(c["k"])

    groups = {
        "system, 6-token look-ahead (default)": lambda c: (c["kind"] == "system" and c["mode"] == "auto"
                                                               and c["threshold"] == 1.0 and c["lookahead"]
                                                               and c["lookahead_tokens"] == 6
                                                               and c["phrases"] and not c["more_pages"]),
        "system, 2-token look-ahead": lambda c: (c["kind"] == "system" and c["mode"] == "auto"
                                                 and c["threshold"] == 1.0 and c["lookahead"]
                                                 and c["lookahead_tokens"] == 2
                                                 and c["phrases"] and not c["more_pages"]),
        "word prediction (same model)": lambda c: c["kind"] == "wordpred",
    }
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, pred in groups.items():
        pts = sorted(((k_of(c), r) for c, r in series(pred)), key=lambda p: p[0])
        if not pts:
            continue
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1]["ksr"] * 100 for p in pts], "o-", label=label)
        axes[1].plot(xs, [p[1]["wpm_key"] for p in pts], "o-", label=label)
        axes[2].plot(xs, [p[1]["wpm_gaze"] for p in pts], "o-", label=label)
    if letters:  # (KSR of letter-by-letter typing is 0 by definition)
        axes[1].axhline(letters["wpm_key"], color="grey", ls=":", label="letters")
        axes[2].axhline(letters["wpm_gaze"], color="grey", ls=":", label="letters")
    axes[0].axhline(65, color="red", ls="--", lw=0.8, label="target 65 %")
    for ax, title in zip(axes, ("KSR (%)", "WPM, keys", "WPM, gaze dwell")):
        ax.set_xlabel("K (candidates per fork)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "simuser_k.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    pts = sorted(((float(c["threshold"]), r) for c, r in series(
        lambda c: c["kind"] == "system" and c["mode"] == "auto" and c["k"] == 8 and c["lookahead"]
        and c["lookahead_tokens"] == 6 and c["phrases"] and not c["more_pages"])), key=lambda p: p[0])
    if len(pts) >= 2:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1]["ksr"] * 100 for p in pts], "o-", label="KSR")
        axes[0].plot(xs, [p[1]["fork_rate"] * 100 for p in pts], "s--", label="fork rate")
        axes[0].plot(xs, [(p[1]["auto_error_rate"] or 0) * 100 for p in pts], "^:", label="auto-write errors")
        axes[1].plot(xs, [p[1]["wpm_key"] for p in pts], "o-", label="keys")
        axes[1].plot(xs, [p[1]["wpm_foot"] for p in pts], "s-", label="foot")
        axes[2].plot(xs, [p[1]["wpm_gaze"] for p in pts], "o-", label="gaze")
        axes[2].plot(xs, [p[1]["wpm_p300"] for p in pts], "s-", label="P300")
        for ax, title in zip(axes, ("% (K=8)", "WPM", "WPM")):
            ax.set_xlabel("gating threshold scale t (entropy ceiling x t, margin floor / t)")
            ax.set_xscale("log", base=2)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "simuser_threshold.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
