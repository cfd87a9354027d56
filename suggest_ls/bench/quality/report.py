"""The report of ``suggest-ls bench quality``: its per-task rows, the table printed and the plot."""

from __future__ import annotations

from typing import Any

from suggest_ls.bench.common import table
from suggest_ls.bench.quality.scoring import Outcome
from suggest_ls.bench.quality.tasks import Task


def task_rows(tasks: list[Task], outcomes: dict[str, list[Outcome]]) -> list[dict[str, Any]]:
    """One row per task: what each arm answered and how it scored."""
    return [
        {
            "task": t.task_id,
            **{
                name: {
                    "text": o.text,
                    "passed": o.passed,
                    "exact": o.exact,
                    "reason": o.reason,
                    "ms": round(o.ms),
                    "shown": o.shown,
                    "confidence": o.confidence,
                    "line_prob": o.line_prob,
                    "min_prob": o.min_prob,
                    "early": o.early,
                }
                for name, o in ((n, outcomes[n][k]) for n in outcomes)
            },
        }
        for k, t in enumerate(tasks)
    ]


def print_report(report: dict[str, Any]) -> None:
    """The figures as a table."""
    rows = []
    for set_name, arms in report["sets"].items():
        for arm, f in arms.items():
            lat = f["latency_ms"]
            rows.append(
                [
                    f"{set_name}/{arm}",
                    f["tasks"],
                    f["pass@1"],
                    f["exact"],
                    f["shown"],
                    f["precision"],
                    lat["p50"],
                    lat["p90"],
                ]
            )
    print(table(["set/arm", "tasks", "pass@1 %", "exact %", "shown %", "precision %", "p50 ms", "p90 ms"], rows))
    for set_name, arms in report["sets"].items():
        for arm, f in arms.items():
            if f["not_shown"]:
                top = ", ".join(f"{k} ({v})" for k, v in list(f["not_shown"].items())[:6])
                print(f"{set_name}/{arm} not shown: {top}")
        if "pipeline" in arms and "raw" in arms and arms["raw"]["pass@1"]:
            ratio = arms["pipeline"]["pass@1"] / arms["raw"]["pass@1"]
            print(f"{set_name}: pipeline/raw pass@1 = {ratio:.2f}")
        curve = arms.get("pipeline", {}).get("by_min_confidence", [])
        if curve:
            cells = "  ".join(f"{r['min_confidence']:.2f}: {r['pass@1']}/{r['precision']}/{r['shown']}" for r in curve)
            print(f"{set_name}/pipeline with minConfidence (pass@1/precision/shown %): {cells}")


def plot(report: dict[str, Any], path: str) -> None:
    """Bars: pass@1, exact, shown and precision per set, raw model against the pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"])
    metrics = ["pass@1", "exact", "shown", "precision"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        arms = report["sets"][name]
        width = 0.8 / max(1, len(arms))
        for i, (arm, figs) in enumerate(arms.items()):
            xs = [m + i * width for m in range(len(metrics))]
            bars = ax.bar(xs, [figs[m] for m in metrics], width, label=arm)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks([m + width * (len(arms) - 1) / 2 for m in range(len(metrics))], metrics)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"HumanEval {name}-line infilling ({next(iter(arms.values()))['tasks']} tasks)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
