import pytest

from suggest_ls.syntax import MAX_REGION_LINES, breaks, checks, region


def at(snippet: str) -> tuple[str, int]:
    before, _, after = snippet.partition("$0")
    return before + after, len(before)


@pytest.mark.parametrize(
    ("snippet", "insert", "replace", "broken"),
    [
        # a statement that fits
        ("def f(x):\n    $0\n    return y\n", "y = x + 1", 0, False),
        ("def f(x):\n    $0\n    return y\n", "if x:", 0, True),
        # a block opener where the next line is not indented deeper
        ("def f(x):\n$0\n    return x\n", "    if x > 0:", 0, True),
        # a plain statement where the next line is indented deeper: it had to open a block
        ("def f(xs):\n    total = 0\n$0\n        total += x\n    return total\n", "    return total", 0, True),
        ("def f(xs):\n    total = 0\n$0\n        total += x\n    return total\n", "    for x in xs:", 0, False),
        # an indentation that matches no outer level
        ("def f(x):\n    if x:\n        y = 1\n$0\n    return y\n", "      z = 2", 0, True),
        # mid-line: an unfinished expression, and one that closes what the line opened
        ("def f(x):\n    return x + $0\n", "(", 0, True),
        ("def f(x):\n    return g($0)\n", "x, 1)", 1, False),
        ("def f(x):\n    return g($0)\n", "x, 1))", 1, True),
        # code already broken elsewhere in the definition: nothing can be judged, nothing refused
        ("def f(x):\n    y = (\n$0\n    return x\n", "    if x:", 0, False),
        # only the enclosing definition is parsed: a broken neighbour does not matter
        ("def g(:\n    pass\n\ndef f(x):\n$0\n    return x\n", "    if x:", 0, True),
        ("def g(:\n    pass\n\ndef f(x):\n$0\n    return x\n", "    x += 1", 0, False),
        # a class body and a decorator
        ("@dataclass\nclass A:\n$0\n    b: int = 0\n", "    a: int = 1", 0, False),
        ("@dataclass\nclass A:\n$0\n    b: int = 0\n", "    def f(self):", 0, True),
        # top-level code between definitions
        ("import os\n\n$0\n\ndef f():\n    pass\n", "x = os.getcwd()", 0, False),
        ("import os\n\n$0\n\ndef f():\n    pass\n", "for p in paths:", 0, True),
    ],
)
def test_breaks(snippet: str, insert: str, replace: int, broken: bool) -> None:
    text, offset = at(snippet)
    assert bool(breaks(text, offset, insert, replace)) is broken


def test_region_is_the_enclosing_definition() -> None:
    text, offset = at("import os\n\n\n@cache\ndef f(x):\n    y = 1\n$0\n    return y\n\n\nclass B:\n    pass\n")
    start, end = region(text, offset) or (0, 0)
    assert text[start:end] == "@cache\ndef f(x):\n    y = 1\n\n    return y\n\n\n"


def test_region_too_long_is_not_checked() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_REGION_LINES + 10))
    text, offset = at("def f():\n" + body + "$0\n    return x0\n")
    assert region(text, offset) is None
    assert breaks(text, offset, "    if x0:", 0) == ""


@pytest.mark.parametrize(
    ("language", "path", "checked"),
    [("python", "", True), ("", "file:///a/b.py", True), ("javascript", "file:///a.js", False), ("", "", False)],
)
def test_checks(language: str, path: str, checked: bool) -> None:
    assert checks(language, path) is checked
