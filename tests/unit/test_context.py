import pytest

from suggest_ls.completion.context import (
    Chunk,
    ChunkRing,
    Cursor,
    cursor_from_snippet,
    pick_extra,
    should_complete,
    wants_block,
    window,
)


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


def test_window_needs_a_resolved_budget():
    with pytest.raises(ValueError):
        window("x = 1\n", 3, -1, 0.25)  # the automatic setting is the completer's to resolve


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


def _file(name: str, n: int) -> str:
    return "".join(f"{name}_value_{i} = compute_{name}({i})\n" for i in range(n))


def test_ring_keeps_chunks_around_edits_newest_first():
    ring = ChunkRing(size=3, lines=6)
    a = _file("alpha", 100)
    ring.add("file:///a.py", a, a.index("alpha_value_50"))
    chunk = ring.chunks()[0]
    assert chunk.path == "file:///a.py"
    assert "alpha_value_50 " in chunk.text and chunk.text.endswith("\n")
    assert chunk.start_line == 47 and len(chunk.text.splitlines()) == 6
    b = _file("beta", 10)
    ring.add("file:///b.py", b, 5)
    assert [c.path for c in ring.chunks()] == ["file:///b.py", "file:///a.py"]


def test_ring_replaces_the_chunk_of_the_same_place_and_drops_the_oldest():
    ring = ChunkRing(size=2, lines=6)
    a = _file("alpha", 100)
    for line in (50, 51, 52):  # typing at one place: one chunk, not three
        ring.add("file:///a.py", a, a.index(f"alpha_value_{line} "))
    assert len(ring) == 1 and "alpha_value_52 " in ring.chunks()[0].text
    ring.add("file:///a.py", a, a.index("alpha_value_90 "))
    ring.add("file:///b.py", _file("beta", 10), 0)
    assert len(ring) == 2 and all("alpha_value_52 " not in c.text for c in ring.chunks())
    ring.forget("file:///b.py")
    assert [c.path for c in ring.chunks()] == ["file:///a.py"]


def test_ring_ignores_blank_places_and_duplicate_text():
    ring = ChunkRing(size=4, lines=4)
    ring.add("file:///blank.py", "\n\n\n\n", 2)
    assert len(ring) == 0
    text = _file("gamma", 4)
    ring.add("file:///one.py", text, 0)
    ring.add("file:///copy.py", text, 0)  # the same text in another file: kept once
    assert [c.path for c in ring.chunks()] == ["file:///copy.py"]


def test_pick_extra_skips_near_copies_of_the_window_and_fits_the_budget():
    window_text = _file("alpha", 10)
    chunks = [
        Chunk("file:///same.py", _file("alpha", 8)),  # already in the window
        Chunk("file:///b.py", _file("beta", 5)),
        Chunk("file:///c.py", _file("gamma", 5)),
        Chunk("file:///big.py", _file("delta", 500)),  # over the budget
    ]
    picked = pick_extra(chunks, window_text, budget_chars=400)
    assert [c.path for c in picked] == ["file:///c.py", "file:///b.py"]  # newest closest to the code
    assert pick_extra(chunks, window_text, budget_chars=0) == ()


@pytest.mark.parametrize(
    ("tps", "tokens"),
    [(0.0, 1024), (5.0, 384), (75.0, 384), (150.0, 448), (300.0, 896), (550.0, 1024), (5000.0, 1024)],
)
def test_the_automatic_window_follows_the_measured_prompt_speed(tps, tokens):
    from suggest_ls.completion.completer import auto_prompt_tokens

    assert auto_prompt_tokens(tps) == tokens


def test_an_explicit_window_wins_and_the_extra_context_follows_the_automatic_one():
    from suggest_ls.completion.completer import Completer
    from suggest_ls.completion.prompt import FAMILIES
    from suggest_ls.settings import resolve

    auto, _ = resolve({})
    c = Completer(None, FAMILIES["plain"], auto)
    c.prefill_tps = 75.0
    assert (c.prompt_tokens(), c.extra_tokens()) == (384, 96)
    c.prefill_tps = 0.0
    assert (c.prompt_tokens(), c.extra_tokens()) == (1024, 256)
    fixed, _ = resolve({"promptTokens": 2048, "extraContextTokens": 512})
    c = Completer(None, FAMILIES["plain"], fixed)
    c.prefill_tps = 75.0
    assert (c.prompt_tokens(), c.extra_tokens()) == (2048, 512)


@pytest.mark.parametrize(
    ("template", "setting", "floor"), [("qwen", -1, 0.25), ("plain", -1, 0.1), ("qwen", 0.4, 0.4), ("plain", 0, 0.0)]
)
def test_the_confidence_floor_follows_the_kind_of_model_unless_set(template, setting, floor):
    from suggest_ls.completion.completer import Completer
    from suggest_ls.completion.prompt import FAMILIES
    from suggest_ls.settings import resolve

    settings, messages = resolve({"minConfidence": setting})
    assert not messages
    assert Completer(None, FAMILIES[template], settings).min_confidence() == floor
