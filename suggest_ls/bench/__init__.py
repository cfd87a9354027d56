"""Benchmarks: ``suggest-ls bench latency|throughput|quality|languages``; each prints figures and writes JSON."""

from __future__ import annotations

import importlib


def run_bench(kind: str, argv: list[str], model: str = "") -> int:
    """Run one benchmark by name with its own command-line arguments."""
    module = importlib.import_module(f"suggest_ls.bench.{kind}")
    return int(module.main(argv, model=model))
