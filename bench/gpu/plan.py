"""The device calls for what bench/gpu/prepare.sh staged under .gpu/: what each call carries and its size
with the working tree that travels with every call, against the 64 MiB a call may carry.

    python bench/gpu/plan.py            # both plans: the coder model, and the small fallback
    python bench/gpu/plan.py --json     # the same as JSON

Call 1 starts the CUDA build (source, wheels, the manifests) and takes each model's short last piece
along; every later staging call carries one full piece; the last call measures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LIMIT = 64 * 2**20
ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / ".gpu"


def tree_bytes() -> int:
    """Tracked files and untracked files git does not ignore: what travels with every call."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            total += path.stat().st_size
    return total


def size(rel: str) -> int:
    path = GPU.parent / rel
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def manifest(folder: str) -> dict[str, str]:
    path = GPU / folder / "MANIFEST"
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def pieces(folder: str) -> list[str]:
    return sorted(f".gpu/{folder}/{p.name}" for p in (GPU / folder).glob("part*"))


def plans() -> dict[str, list[list[str]]]:
    """For each model staged, the carry list of each call (the measure call last, carrying nothing)."""
    first = [".gpu/src.tar.xz", ".gpu/wheels"]
    folders = [f for f in ("model", "fallback") if manifest(f)]
    first += [f".gpu/{f}/MANIFEST" for f in folders]
    # the short last piece of each model rides with call 1 (it fits beside the source and the wheels)
    first += [pieces(f)[-1] for f in folders if len(pieces(f)) > 1]
    out: dict[str, list[list[str]]] = {}
    for f in folders:
        rest = [p for p in pieces(f) if p not in first]
        out[manifest(f)["model"]] = [first, *([p] for p in rest), []]
    return out


def main() -> int:
    tree = tree_bytes()
    result = {"tree_bytes": tree, "limit_bytes": LIMIT, "plans": {}}
    worst = 0
    for model, calls in plans().items():
        rows = []
        for i, carry in enumerate(calls, 1):
            total = tree + sum(size(c) for c in carry)
            worst = max(worst, total)
            step = "measure" if i == len(calls) else "stage"
            rows.append({"call": i, "step": step, "carry": carry, "bytes": total})
        result["plans"][model] = rows
    if "--json" in sys.argv:
        print(json.dumps(result, indent=2))
    else:
        print(f"working tree {tree / 2**20:.1f} MiB travels with every call; limit {LIMIT / 2**20:.0f} MiB a call")
        for model, rows in result["plans"].items():
            stages = sum(r["step"] == "stage" for r in rows)
            print(f"-- {model}: {stages} staging calls, then measure")
            for r in rows:
                carry = " ".join(r["carry"]) or "(nothing)"
                print(f"  {r['call']:>2} {r['step']:<7} {r['bytes'] / 2**20:5.1f} MiB  {carry}")
    if worst > LIMIT:
        print(f"a call would carry {worst / 2**20:.1f} MiB, over the limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
