import pytest

from suggest_ls.completion.syntax import MAX_REGION_LINES, breaks, checks, region


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
        # inside a line nothing is judged (brackets are balanced by clean)
        ("def f(x):\n    return x + $0\n", "(", 0, False),
        # code already broken elsewhere in the definition: nothing can be judged, nothing refused
        ("def f(x):\n    y = (\n$0\n    return x\n", "    if x:", 0, False),
        # only the enclosing definition is parsed: a broken neighbour does not matter
        ("def g(:\n    pass\n\ndef f(x):\n$0\n    return x\n", "    if x:", 0, True),
        ("def g(:\n    pass\n\ndef f(x):\n$0\n    return x\n", "    x += 1", 0, False),
        # a class body and a decorator
        ("@dataclass\nclass A:\n$0\n    b: int = 0\n", "    a: int = 1", 0, False),
        ("@dataclass\nclass A:\n$0\n    b: int = 0\n", "    def f(self):", 0, True),
        # in a method: a broken sibling method does not matter
        (
            "class A:\n    def g(self:\n        pass\n\n    def f(self):\n$0\n        return 1\n",
            "        if x:",
            0,
            True,
        ),
        (
            "class A:\n    def g(self:\n        pass\n\n    def f(self):\n$0\n        return 1\n",
            "        x = 1",
            0,
            False,
        ),
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
    area = region(text, offset, 4)
    assert area is not None and area.indent == 0
    assert text[area.start : area.end] == "@cache\ndef f(x):\n    y = 1\n\n    return y\n\n\n"


def test_region_of_a_method_is_the_method() -> None:
    text, offset = at(
        "class A:\n    x = 1\n\n    @property\n    def f(self):\n        if self.x:\n            $0\n"
        "        return 2\n\n    def g(self):\n        pass\n"
    )
    area = region(text, offset, 12)
    assert area is not None and area.indent == 4
    assert text[area.start : area.end].startswith("    @property\n    def f(self):")
    assert text[area.start : area.end].endswith("        return 2\n\n")


def test_top_level_code_is_its_own_statement() -> None:
    text, offset = at("def f():\n    pass\n\nif x:\n    y = 1\nelse:\n$0\n\nz = 3\n")
    area = region(text, offset, 4)
    assert area is not None and text[area.start : area.end] == "if x:\n    y = 1\nelse:\n\n\n"


def test_region_too_long_is_not_checked() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_REGION_LINES + 10))
    text, offset = at("def f():\n" + body + "$0\n    return x0\n")
    assert region(text, offset, 4) is None
    assert breaks(text, offset, "    if x0:", 0) == ""


@pytest.mark.parametrize(
    ("language", "path", "checked"),
    [("python", "", True), ("", "file:///a/b.py", True), ("javascript", "file:///a.js", False), ("", "", False)],
)
def test_checks(language: str, path: str, checked: bool) -> None:
    assert checks(language, path) is checked
