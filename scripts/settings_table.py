"""Write the settings table into README.md from suggest_ls.settings.OPTIONS (``--check`` only compares)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from suggest_ls.settings import OPTIONS, default_of

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def table() -> str:
    """The Markdown table of every setting."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for o in OPTIONS:
        choices = f" One of {', '.join(repr(c) for c in o.choices)}." if o.choices else ""
        rows.append(f"| `{o.key}` | `{json.dumps(default_of(o))}` | {o.description}{choices} |")
    return "\n".join(rows)


def render(text: str) -> str:
    """README text with the table between the markers replaced."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    current = README.read_text()
    wanted = render(current)
    if "--check" in sys.argv:
        sys.exit(
            0 if current == wanted else "README settings table is out of date: run python scripts/settings_table.py"
        )
    README.write_text(wanted)
