"""The key figures of one `bench/gpu/run.sh measure` against the GPU targets, as $OUT/summary.json.

    python bench/gpu/summary.py --out DIR [--steps FILE] [--dry] [--seconds N]

Reads what the measuring step left in DIR (model.txt, check.txt, latency.json, throughput.json,
quality.json, nvidia-smi.txt) and prints one line per figure. Standard library only: it runs on the
GPU machine's plain python3.

Targets: last-keystroke p99 < 150 ms; generation > 50 tokens/s (one document); GPU memory < 85 %
(the offload plan itself keeps 10 % free: more than 90 % used breaks that rule); the aggregate of
8 documents at once >= 3x that of one.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

TARGETS = {
    "last_keystroke_p99_ms": ("<", 150.0),
    "tokens_per_s": (">", 50.0),
    "gpu_memory_used_fraction": ("<", 0.85),
    "docs8_over_docs1": (">=", 3.0),
}
HEADROOM = 0.10


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _kv(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def check_figures(text: str) -> dict[str, Any]:
    """The device, offload and pynvml memory lines of `suggest-ls check`."""
    out: dict[str, Any] = {}
    if m := re.search(r"^device\s+(.*?); layers offloaded (\d+)/(\d+); (.*)$", text, re.M):
        out["device"] = m.group(1)
        out["layers_offloaded"] = f"{m.group(2)}/{m.group(3)}"
        out["all_layers_offloaded"] = m.group(2) == m.group(3)
        out["offload"] = m.group(4)
    if m := re.search(r"^gpu memory ([\d.]+) / ([\d.]+) GiB used \((\d+)%\) on (.*)$", text, re.M):
        used, total = float(m.group(1)), float(m.group(2))
        out["gpu"] = m.group(4)
        out["gpu_memory_used_gib"] = used
        out["gpu_memory_total_gib"] = total
        out["gpu_memory_used_fraction"] = round(used / total, 4) if total else None
        out["headroom_rule_held"] = total > 0 and used / total <= 1 - HEADROOM
    elif "no GPU" in text:
        out["gpu"] = None
    if m := re.search(r"^prompt\s+(\d+) tokens/s evaluated", text, re.M):
        out["prompt_eval_tokens_per_s"] = int(m.group(1))
    if m := re.search(r"^model\s+(.*?) \(from", text, re.M):
        out["model_path"] = m.group(1)
    return out


def latency_figures(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"keystrokes": report.get("config", {}).get("keystrokes")}
    for name, r in report.get("servers", {}).items():
        last, first = r["server_ms_last_keystroke"], r["keystroke_to_first_suggestion_ms"]
        out[name] = {
            "last_keystroke_p50_ms": last["p50"],
            "last_keystroke_p99_ms": last["p99"],
            "last_keystroke_n": last["n"],
            "keystroke_to_first_suggestion_p50_ms": first["p50"],
            "keystroke_to_first_suggestion_p99_ms": first["p99"],
            "model_runs_per_keystroke": r.get("model_runs_per_keystroke"),
        }
        cold = [v for rnd in r.get("cold_first_suggestion_ms") or [] for v in rnd or [] if v is not None]
        if cold:
            out[name]["cold_first_suggestion_ms"] = cold
    return out


def throughput_figures(report: dict[str, Any]) -> dict[str, Any]:
    points = {p["docs"]: p for p in report.get("points", [])}
    out: dict[str, Any] = {}
    for n, p in sorted(points.items()):
        out[f"docs{n}"] = {
            "batched_tokens_per_s": p["batched"]["tokens_per_s"],
            "one_slot_tokens_per_s": p["one_slot"]["tokens_per_s"],
            "batched_generation_tokens_per_s": p["batched"]["generation_tokens_per_s"],
            "one_slot_generation_tokens_per_s": p["one_slot"]["generation_tokens_per_s"],
            "batched_over_one_slot": p["ratio"],
        }
    if 1 in points:
        out["tokens_per_s"] = points[1]["one_slot"]["generation_tokens_per_s"]
    if 1 in points and max(points) > 1:
        n = max(points)
        one = points[1]["batched"]["tokens_per_s"]
        out[f"docs{n}_over_docs1"] = round(points[n]["batched"]["tokens_per_s"] / one, 2) if one else None
    return out


def quality_figures(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for set_name, arms in report.get("sets", {}).items():
        for arm, f in arms.items():
            out[f"{set_name}/{arm}"] = {
                "tasks": f["tasks"],
                "pass@1": f["pass@1"],
                "exact": f["exact"],
                "shown": f["shown"],
                "precision": f["precision"],
                "latency_p50_ms": f["latency_ms"]["p50"],
                "latency_p90_ms": f["latency_ms"]["p90"],
            }
    return out


def smi_memory(text: str) -> dict[str, str]:
    """The memory.used column of each `nvidia-smi --query-gpu` reading, before and after."""
    out: dict[str, str] = {}
    for m in re.finditer(r"^## nvidia-smi (\w+).*\n(?:name.*\n)?(.*)$", text, re.M):
        out[m.group(1)] = m.group(2).strip()
    return out


def verdict(figure: float | None, op: str, bound: float) -> bool | None:
    if figure is None:
        return None
    return {"<": figure < bound, ">": figure > bound, ">=": figure >= bound}[op]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", default="")
    p.add_argument("--dry", action="store_true", help="a dry run on the CPU: the targets do not apply")
    p.add_argument("--seconds", type=int, default=0, help="how long the measuring step took so far")
    args = p.parse_args()
    out = Path(args.out)
    check_text = (out / "check.txt").read_text() if (out / "check.txt").exists() else ""
    summary: dict[str, Any] = {
        "dry_run": args.dry,
        "model": _kv(out / "model.txt"),
        "check": check_figures(check_text),
        "steps": {},
        "seconds": args.seconds,
    }
    if args.steps and Path(args.steps).exists():
        for line in Path(args.steps).read_text().splitlines():
            name, rc, secs = [*line.split(), "", "", ""][:3]
            summary["steps"][name] = {"exit": rc, "seconds": int(secs or 0)}
    lat = _load(out / "latency.json")
    tp = _load(out / "throughput.json")
    qual = _load(out / "quality.json")
    summary["latency"] = latency_figures(lat) if lat else None
    summary["throughput"] = throughput_figures(tp) if tp else None
    summary["quality"] = quality_figures(qual) if qual else None
    smi = out / "nvidia-smi.txt"
    summary["nvidia_smi_memory_used"] = smi_memory(smi.read_text()) if smi.exists() else {}
    if lat:
        summary["machine"] = lat.get("machine")
    ours = (summary["latency"] or {}).get("suggest-ls", {})
    tput = summary["throughput"] or {}
    ratio_key = next((k for k in tput if k.endswith("_over_docs1")), "")
    figures = {
        "last_keystroke_p99_ms": ours.get("last_keystroke_p99_ms"),
        "tokens_per_s": tput.get("tokens_per_s"),
        "gpu_memory_used_fraction": summary["check"].get("gpu_memory_used_fraction"),
        "docs8_over_docs1": tput.get(ratio_key) if ratio_key == "docs8_over_docs1" else None,
    }
    summary["targets"] = {
        k: {
            "figure": figures[k],
            "target": f"{op} {bound:g}",
            "met": None if args.dry else verdict(figures[k], op, bound),
        }
        for k, (op, bound) in TARGETS.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    c = summary["check"]
    print(f"summary: the {summary['model'].get('model', '?')} model; {summary['model'].get('why', '')}")
    print(f"  device {c.get('device')}, layers {c.get('layers_offloaded')}, gpu {c.get('gpu')}")
    for k, t in summary["targets"].items():
        mark = {True: "met", False: "MISSED", None: "n/a" if args.dry else "no figure"}[t["met"]]
        print(f"  {k:<26} {t['figure']!s:>10}  target {t['target']:<8} {mark}")
    if ours:
        print(
            f"  keystroke to first suggestion p50/p99 {ours['keystroke_to_first_suggestion_p50_ms']}/"
            f"{ours['keystroke_to_first_suggestion_p99_ms']} ms; last keystroke p50 {ours['last_keystroke_p50_ms']} ms"
        )
    for name, q in (summary["quality"] or {}).items():
        print(f"  quality {name}: {q['tasks']} tasks, pass@1 {q['pass@1']} %, p50 {q['latency_p50_ms']} ms")
    for name, s in summary["steps"].items():
        if s["exit"] != "0":
            print(f"  step {name}: exit {s['exit']}")
    print(f"wrote {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
