import pytest

from suggest_ls.context import Cursor, cursor_from_snippet, should_complete, wants_block, window


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("def f(x):\n    return $0", None),
        ("print($0)", None),
        ("foo(a, $0])", None),
        ("x = [1, 2$0]", None),
        ("valu$0e = 1", "inside a word"),
        ("x = $0foo(1)", "text after the cursor on this line"),
        ("", None),
    ],
)
def test_should_complete(snippet, reason):
    assert should_complete(cursor_from_snippet(snippet)) == reason


@pytest.mark.parametrize(
    ("snippet", "mode", "block"),
    [
        ("def f(x):\n    $0", "auto", True),
        ("def f(x):\n    $0\n", "auto", True),
        ("def f(x):\n    $0\n    return x\n", "auto", False),
        ("if x {\n  $0\n}", "auto", True),
        ("x = 1\n$0", "auto", False),
        ("def f(x):\n    ret$0", "auto", False),
        ("x = 1\n$0", "always", True),
        ("def f(x):\n    $0", "never", False),
    ],
)
def test_wants_block(snippet, mode, block):
    assert wants_block(cursor_from_snippet(snippet), mode) is block


def test_cursor_lines():
    cur = cursor_from_snippet("a = 1\n  b = f($0)\nc")
    assert (cur.line_prefix, cur.line_suffix, cur.indent) == ("  b = f(", ")", "  ")
    assert Cursor("x", "").line_suffix == ""


def test_window_keeps_short_text_whole():
    text = "line1\nline2\nline3\n"
    assert window(text, 8, 1024, 0.25) == ("line1\nli", "ne2\nline3\n")


def test_window_head_is_stable_while_typing():
    text = "".join(f"line number {i}\n" for i in range(2000))
    offset = len(text) // 2
    heads = set()
    for typed in range(0, 200):
        prefix, suffix = window(text[:offset] + "x" * typed + text[offset:], offset + typed, 256, 0.25)
        assert prefix.endswith("x" * typed)
        assert len(prefix) <= int(256 * 3.2)
        heads.add(prefix[:40])
    assert len(heads) <= 2  # the window start moves at most once in 200 keystrokes
    assert suffix.endswith("\n") and "line number" in suffix


def test_window_starts_at_a_line_start():
    text = "".join(f"row {i}\n" for i in range(5000))
    prefix, suffix = window(text, len(text) - 3, 100, 0.5)
    assert prefix.startswith("row ")
    assert suffix == text[-3:]
