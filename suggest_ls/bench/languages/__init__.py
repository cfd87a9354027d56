"""``suggest-ls bench languages``: masked lines of real source files in several languages, through the
real LSP server and the raw model beside it.

The corpus is other people's code installed from the package registries (npm, Debian, PyPI), each
at a pinned version, cached outside the repository (``--cache``). A case masks one line of a file:
the editor document is the file with that line emptied down to its indentation, the cursor after
the indentation, as an editor's auto-indent leaves it; the reference is the line's text. Blank
lines, comment lines, lines of closers or lone block keywords (``} else {``, ``end``), very short
and very long lines are never masked. Files and lines are drawn with a seeded generator.

Arms: ``pipeline`` (a ``suggest-ls --stdio`` subprocess asked for an automatic inline completion,
following ``suggest/refresh``, with bench quality's client) and ``raw`` (the model in-process, its
own FIM prompt on the same prefix and suffix window the server cuts, greedy, first line).
Scores per language and arm: exact match (whitespace-trimmed), edit similarity (1 - normalized
Levenshtein distance), shown rate and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from suggest_ls.bench.common import Progress, machine, write_json
from suggest_ls.bench.languages.arms import PipelineArm, RawModelArm, window_tokens
from suggest_ls.bench.languages.cases import Case, build_cases, cleaning_of, count_maskable
from suggest_ls.bench.languages.corpus import SOURCES, CorpusError, default_cache, load_corpus
from suggest_ls.bench.languages.report import case_row, print_report
from suggest_ls.bench.languages.scoring import Scored, summarize
from suggest_ls.bench.quality.arms import BENCH_SETTINGS
from suggest_ls.settings import parse_pairs, resolve


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Arguments of ``suggest-ls bench languages``."""
    p = argparse.ArgumentParser(prog="suggest-ls bench languages", description=__doc__.split("\n")[0])
    p.add_argument("--languages", default=",".join(SOURCES), help=f"comma list of: {', '.join(SOURCES)}")
    p.add_argument("--per-language", type=int, default=200, help="cases per language")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw of files and lines")
    p.add_argument("--arms", default="pipeline,raw", help="comma list of: pipeline, raw")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a suggest-ls setting")
    p.add_argument("--cache", default="", help="downloads and unpacked sources (default ~/.cache/suggest-ls/...)")
    p.add_argument("--corpus-only", action="store_true", help="fetch the sources and count the cases; no model")
    p.add_argument("--examples", type=int, default=3, help="lines the raw model got right and the pipeline not")
    p.add_argument("--out", default="bench-results/languages.json", help="where the JSON goes")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Fetch the corpus, build the cases and run every arm on them; return the report."""
    cache = Path(args.cache).expanduser() if args.cache else default_cache()
    languages = [lang for lang in args.languages.split(",") if lang]
    unknown = [lang for lang in languages if lang not in SOURCES]
    if unknown:
        raise SystemExit(f"unknown languages: {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    settings = parse_pairs(args.set)
    report: dict[str, Any] = {
        "benchmark": "languages",
        "machine": machine(),
        "model": model or settings.get("model") or "default",
        "settings": {**BENCH_SETTINGS, **settings},
        "seed": args.seed,
        "per_language": args.per_language,
        "corpus": {},
        "languages": {},
        "cases": {},
    }
    cases: dict[str, list[Case]] = {}
    for lang in languages:
        corpus = load_corpus(lang, cache)
        cases[lang] = build_cases(corpus, args.per_language, args.seed)
        entry: dict[str, Any] = {"sources": corpus.origin, "files": len(corpus.files), "cases": len(cases[lang])}
        if args.corpus_only:
            entry["readable_files"], entry["maskable_lines"] = count_maskable(corpus)
            resolved, _ = resolve(settings)
            tokens = window_tokens(settings, {})
            verdicts = [(c, cleaning_of(c, tokens, resolved.suffix_share)) for c in cases[lang]]
            refused: dict[str, int] = {}
            for _, why in verdicts:
                if why:
                    refused[why] = refused.get(why, 0) + 1
            entry["cleaning"] = {
                "kept": sum(not why for _, why in verdicts),
                "refused": refused,
                "examples": [{"case": c.case_id, "reference": c.middle, "why": why} for c, why in verdicts if why][:20],
            }
        report["corpus"][lang] = entry
    if args.corpus_only:
        report["cases"] = {lang: [{"case": c.case_id, "reference": c.middle} for c in cs] for lang, cs in cases.items()}
        return report
    workdir = Path(tempfile.mkdtemp(prefix="suggest-ls-languages-"))
    arms: dict[str, PipelineArm | RawModelArm] = {}
    try:
        names = [a for a in args.arms.split(",") if a]
        for name in sorted(names, key=lambda a: a != "pipeline"):  # the raw arm takes the server's window
            if name == "pipeline":
                arms[name] = PipelineArm(model, settings, workdir)
            elif name == "raw":
                served = arms.get("pipeline")
                status = served.server.status if isinstance(served, PipelineArm) else {}
                report["prompt_tokens"] = window_tokens(settings, status)
                arms[name] = RawModelArm(model or str(settings.get("model", "")), settings, report["prompt_tokens"])
            else:
                raise SystemExit(f"unknown arm {name!r} (known: pipeline, raw)")
            await arms[name].start()
        server = arms.get("pipeline")
        status = server.server.status if isinstance(server, PipelineArm) else {}
        report["server"] = {k: status.get(k) for k in ("template", "model", "device", "quantization")}
        for lang, lang_cases in cases.items():
            scored: dict[str, list[Scored]] = {a: [] for a in arms}
            progress = Progress(f"languages {lang}", len(lang_cases))
            for i, case in enumerate(lang_cases):
                for name, arm in arms.items():
                    scored[name].append(await arm.complete(case))
                note = "  ".join(
                    f"{n} {100 * sum(s.exact for s in ss) / max(1, len(ss)):.0f}%" for n, ss in scored.items()
                )
                progress.update(i + 1, note)
            progress.close()
            report["languages"][lang] = {name: summarize(ss) for name, ss in scored.items()}
            report["cases"][lang] = [
                case_row(c, {name: scored[name][k] for name in scored}) for k, c in enumerate(lang_cases)
            ]
    finally:
        for arm in arms.values():
            await arm.close()
    return report


def main(argv: list[str], model: str = "") -> int:
    """Entry point of ``suggest-ls bench languages``."""
    args = parse_args(argv)
    try:
        report = asyncio.run(run(args, model))
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report, args.examples)
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0
