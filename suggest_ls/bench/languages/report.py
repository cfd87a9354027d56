"""The report of ``suggest-ls bench languages``: its per-case rows and the tables printed."""

from __future__ import annotations

from typing import Any

from suggest_ls.bench.common import table
from suggest_ls.bench.languages.cases import Case
from suggest_ls.bench.languages.scoring import Scored


def case_row(case: Case, scored: dict[str, Scored]) -> dict[str, Any]:
    """One case's row: its reference and what each arm answered and scored."""
    return {
        "case": case.case_id,
        "reference": case.middle,
        "indent": case.indent,
        **{
            arm: {
                "text": s.outcome.text,
                "line": s.line,
                "lines": s.lines,
                "shown": s.outcome.shown,
                "exact": s.exact,
                "similarity": round(s.similarity, 4),
                "reason": s.outcome.reason,
                "ms": round(s.outcome.ms),
                "line_ms": round(s.line_ms or s.outcome.ms),
                "confidence": s.outcome.confidence,
                "tokens_generated": s.outcome.tokens_generated,
            }
            for arm, s in scored.items()
        },
    }


def print_report(report: dict[str, Any], examples: int = 3) -> None:
    """The figures as a table, then what the pipeline lost against the raw model."""
    if not report["languages"]:
        rows = [
            [
                lang,
                ", ".join(c["sources"]),
                c["files"],
                c.get("readable_files", ""),
                c.get("maskable_lines", ""),
                c["cases"],
                c["cleaning"]["kept"] if "cleaning" in c else "",
            ]
            for lang, c in report["corpus"].items()
        ]
        header = ["language", "sources", "files", "read", "maskable lines", "cases", "references kept"]
        print(table(header, rows))
        for c in report["corpus"].values():
            for ex in c.get("cleaning", {}).get("examples", [])[:examples]:
                print(f"  {ex['case']}: {ex['reference']!r} would not be shown as it is: {ex['why']}")
        return
    rows = []
    for lang, arms in report["languages"].items():
        for arm, f in arms.items():
            rows.append(
                [
                    f"{lang}/{arm}",
                    f["cases"],
                    f["exact"],
                    f["edit_similarity"],
                    f["shown"],
                    f["exact_of_shown"],
                    f["latency_ms"]["p50"],
                    f["line_ms"]["p50"],
                ]
            )
    header = ["language/arm", "cases", "exact %", "edit sim %", "shown %", "exact/shown %", "p50 ms", "line p50 ms"]
    print(table(header, rows))
    for lang, arms in report["languages"].items():
        for arm, f in arms.items():
            if f["not_shown"]:
                top = ", ".join(f"{k} ({v})" for k, v in list(f["not_shown"].items())[:5])
                print(f"{lang}/{arm} not shown: {top}")
        if "pipeline" not in arms or "raw" not in arms:
            continue
        rows_ = report["cases"][lang]
        lost = [r for r in rows_ if r["raw"]["exact"] and not r["pipeline"]["exact"]]
        won = [r for r in rows_ if r["pipeline"]["exact"] and not r["raw"]["exact"]]
        print(f"{lang}: pipeline exact where the raw model was not: {len(won)}; the reverse: {len(lost)}")
        for r in lost[:examples]:
            p = r["pipeline"]
            got = repr(p["line"].strip()) if p["shown"] else f"nothing ({p['reason']})"
            print(f"  {r['case']}: {r['reference']!r} -> pipeline {got}")
