import pytest

from suggest_ls.backends.contract import StopRule, should_stop
from suggest_ls.completion.clean import clean, fix_indentation, language_stops
from suggest_ls.completion.context import cursor_from_snippet

LINE = StopRule()


def block(indent: int) -> StopRule:
    return StopRule(multiline=True, base_indent=indent, line_started=False)


@pytest.mark.parametrize(
    ("snippet", "raw", "rule", "text", "replace", "reason"),
    [
        # plain single line: cut at the newline, trailing spaces dropped
        ("def f(x):\n    return $0", "x + 1  \n\ndef g():", LINE, "x + 1", 0, ""),
        # the abstain sentinel
        ("x = $0", "NEXT_TOKEN", LINE, "", 0, "abstained (NEXT_TOKEN)"),
        ("x = $0", "foo()NEXT_TOKEN", LINE, "foo()", 0, ""),
        # whitespace only
        ("x = $0", "   \n", LINE, "", 0, "empty after cleaning"),
        # the model ends the line at once
        ("x = 1$0", "\nprint(x)", LINE, "", 0, "model ended the line"),
        # at indentation: leading blank lines and doubled indentation are dropped
        ("def f():\n    $0", "\n    return 1\n", StopRule(line_started=False), "return 1", 0, ""),
        # a space already typed: no second space
        ("x = $0", " 42", LINE, "42", 0, ""),
        # closers after the cursor are covered by the range, not duplicated
        ("print($0)", "x, y)", LINE, "x, y)", 1, ""),
        ("x = [foo(a, $0)]", "b)]", LINE, "b)]", 2, ""),
        # an unmatched closer is cut
        ("x = f(a)$0", ") + 1", LINE, "", 0, "empty after cleaning"),
        ("y = [1, 2$0", ", 3]]", LINE, ", 3]", 0, ""),
        # already present after the cursor
        ("call($0)", ")", LINE, "", 0, "duplicates the text after the cursor"),
        # a duplicate of the next line
        (
            "def f():\n    $0\n    return 1\n",
            "return 1",
            StopRule(line_started=False),
            "",
            0,
            "duplicates the next line",
        ),
        # a block stops where the indentation returns to the opener's
        (
            "def f(x):\n    $0",
            "y = x * 2\n    return y\n\ndef g():\n    pass",
            block(0),
            "y = x * 2\n    return y",
            0,
            "",
        ),
        # repeated lines are cut
        ("def f(x):\n    $0", "x += 1\n    x += 1\n    x += 1", block(0), "x += 1", 0, ""),
        # a block that would rewrite the next existing line stops before it
        ("if a:\n    $0\nelse:\n    pass\n", "b()\n    c()\nelse:", block(0), "b()\n    c()", 0, ""),
        # stop strings of the template
        ("x = $0", "1<|endoftext|>junk", StopRule(stop=("<|endoftext|>",)), "1", 0, ""),
        # at column 0 of an empty line the model's indentation is kept (HumanEval's hole)
        ("def f(x):\n    y = x\n$0\n    return y\n", "    y += 1\n", LINE, "    y += 1", 0, ""),
        # tabs in a file indented with spaces are re-indented
        ("def f(x):\n    if x:\n$0", "\t\treturn 1", LINE, "        return 1", 0, ""),
        # spaces in a file indented with tabs
        ("def f(x):\n\tif x:\n$0", "        return 1", LINE, "\t\treturn 1", 0, ""),
        # a line repeating the one above is dropped ...
        ("def f(x):\n    total += x\n    $0", "total += x", LINE, "", 0, "repeats the line above"),
        # ... but closers and short keywords may repeat
        ("if a {\n  if b {\n  }\n$0", "}", LINE, "}", 0, ""),
        # a suggestion that only repeats what is already after the cursor
        ("foo($0bar)", "bar", LINE, "", 0, "duplicates the text after the cursor"),
        # a block of several lines keeps its inner indentation
        (
            "for x in xs:\n    $0",
            "if x:\n        y.append(x)\nprint(y)",
            block(0),
            "if x:\n        y.append(x)",
            0,
            "",
        ),
        # a leading blank line before a block at the indentation is dropped
        ("def f():\n    $0", "\n\n    return 1", block(0), "return 1", 0, ""),
        # the abstain sentinel after a newline in a block
        ("def f():\n    $0", "NEXT_TOKEN\n", block(0), "", 0, "abstained (NEXT_TOKEN)"),
        # a code fence ends the suggestion (per-language stop)
        ("x = $0", "1\n```\nmore", StopRule(stop=("\n```",)), "1", 0, ""),
        # a model looping inside the line (the embedded model's demo) is never shown
        (
            "def average(values):\n    total = sum(values)\n    return $0",
            "100 * total / total + 100 * total / total + 100 * total",
            LINE,
            "",
            0,
            "repeats itself",
        ),
        ("x = $0", "self.assertEqual(self.assertEqual(", LINE, "", 0, "repeats itself"),
        # repetition that is code, not a loop
        ("x = $0", "[0, 0, 0, 0, 0, 0, 0, 0]", LINE, "[0, 0, 0, 0, 0, 0, 0, 0]", 0, ""),
        ("    return $0", "fib(n - 1) + fib(n - 2)", LINE, "fib(n - 1) + fib(n - 2)", 0, ""),
        ("a = $0", "np.zeros((n, n)); b = np.zeros((n, n))", LINE, "np.zeros((n, n)); b = np.zeros((n, n))", 0, ""),
        # a pointer and its length, an argument written twice: C that goes on after the repeat
        ("    $0", "if (append(ub, uclc->prefix, uclc->prefix_len)) goto error;", LINE, None, 0, ""),
        ("    $0", 'n = snprintf(d, l, "%.*s", (int) (ptr-base), (int) (ptr-base), base);', LINE, None, 0, ""),
        # a loop cut inside its third copy (by the token cap) is still one
        ("x = $0", "foo(bar, baz) + foo(bar, baz) + foo(ba", LINE, "", 0, "repeats itself"),
    ],
)
def test_clean_table(snippet, raw, rule, text, replace, reason):
    got = clean(raw, cursor_from_snippet(snippet), rule)
    text = raw if text is None else text  # None: the raw text as it is
    assert (got.text, got.replace, got.reason) == (text, replace, reason)


@pytest.mark.parametrize(
    ("text", "rule", "stop"),
    [
        ("x + 1", LINE, False),
        ("x + 1\n", LINE, True),
        ("\n", LINE, True),
        ("\n", StopRule(line_started=False), False),
        ("\n  return 1\n", StopRule(line_started=False), True),
        ("y = 1\n    z = 2\n", block(0), False),
        ("y = 1\n    z = 2\ndef g", block(0), True),
        ("maybe NEXT_TOKEN", LINE, True),
        ("a<eos>", StopRule(stop=("<eos>",)), True),
    ],
)
def test_should_stop(text, rule, stop):
    assert should_stop(text, rule) is stop


def test_language_stops():
    assert "\nif __name__" in language_stops("python")
    assert "\nif __name__" in language_stops("py")
    assert language_stops("rust") == ("\n```",)


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        ("\treturn 1", "def f():\n  x = 1\n", "  return 1"),
        ("    return 1", "def f():\n\tx = 1\n", "\treturn 1"),
        ("  a\n    b", "no indentation here", "  a\n    b"),
    ],
)
def test_fix_indentation(text, context, expected):
    assert fix_indentation(text, context) == expected


@pytest.mark.parametrize(
    ("text", "following", "previous"),
    [
        ("a\n  \nb$0\n\n  c\nd", "  c", "a"),
        ("$0", None, None),
        ("x = 1\n$0 tail\n", None, "x = 1"),
        ("\n\n$0\n\n", None, None),
    ],
)
def test_code_lines_around_the_cursor(text: str, following: str | None, previous: str | None) -> None:
    from suggest_ls.completion.clean import _next_code_line, _previous_code_line

    before, _, after = text.partition("$0")
    assert _next_code_line(after) == following
    assert _previous_code_line(before) == previous
