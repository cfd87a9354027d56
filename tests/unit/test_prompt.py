import pytest

from suggest_ls.backends.contract import ModelInfo
from suggest_ls.completion.context import Chunk, Cursor, cursor_from_snippet
from suggest_ls.completion.prompt import FAMILIES, RULES, build_prompt, detect_template, own_layout

CUR = cursor_from_snippet("def f(x):\n    return $0\n\nprint(f(1))\n")


@pytest.mark.parametrize(
    ("info", "name", "expected"),
    [
        (
            ModelInfo(fim_prefix="<fim_prefix>", fim_suffix="<fim_suffix>", fim_middle="<fim_middle>"),
            "starcoder",
            "<fim_prefix><fim_suffix>\n\nprint(f(1))\n<fim_middle>def f(x):\n    return ",
        ),
        (
            ModelInfo(fim_prefix="▁<PRE>", fim_suffix="▁<SUF>", fim_middle="▁<MID>"),
            "codellama",
            "<PRE> <SUF>\n\nprint(f(1))\n <MID> def f(x):\n    return ",
        ),
        (
            ModelInfo(fim_prefix="<｜fim▁begin｜>", fim_suffix="<｜fim▁hole｜>", fim_middle="<｜fim▁end｜>"),
            "deepseek",
            "<｜fim▁begin｜>def f(x):\n    return <｜fim▁hole｜>\n\nprint(f(1))\n<｜fim▁end｜>",
        ),
        (
            ModelInfo(
                name="Qwen2.5 Coder 1.5B",
                fim_prefix="<|fim_prefix|>",
                fim_suffix="<|fim_suffix|>",
                fim_middle="<|fim_middle|>",
            ),
            "qwen-spm",
            "<|fim_prefix|><|fim_suffix|>\n\nprint(f(1))\n<|fim_middle|>def f(x):\n    return",
        ),
        (
            ModelInfo(
                name="codegemma-2b",
                architecture="gemma",
                fim_prefix="<|fim_prefix|>",
                fim_suffix="<|fim_suffix|>",
                fim_middle="<|fim_middle|>",
            ),
            "codegemma",
            "<|fim_prefix|>def f(x):\n    return <|fim_suffix|>\n\nprint(f(1))\n<|fim_middle|>",
        ),
        (
            ModelInfo(fim_prefix="[PREFIX]", fim_suffix="[SUFFIX]", fim_middle="[MIDDLE]"),
            "codestral",
            "[SUFFIX]\n\nprint(f(1))\n[PREFIX]def f(x):\n    return ",
        ),
        (ModelInfo(name="Gemma 3 270m", architecture="gemma3"), "plain", "def f(x):\n    return "),
    ],
)
def test_golden_prompts(info, name, expected):
    template = detect_template(info)
    assert template.name == name
    assert build_prompt(CUR, template) == expected


def test_rules_prompt_text():
    assert RULES.startswith(
        "Task: Complete the next step in this function.\nRules:\n- Only output code, no explanations."
    )
    assert '- If unsure, output "NEXT_TOKEN".' in RULES
    assert RULES.endswith("Code:\n")


def test_override_by_family_name_and_custom_text():
    assert detect_template(ModelInfo(), "qwen") is FAMILIES["qwen"]
    custom = detect_template(ModelInfo(eos="</s>"), "<s>{suffix}||{prefix}")
    assert custom.name == "custom" and custom.stop == ("</s>",)
    assert build_prompt(cursor_from_snippet("a$0b"), custom) == "<s>b||a"


def test_placeholders_inside_the_code_are_not_expanded():
    cur = cursor_from_snippet('s = "{suffix}"$0 # {prefix}')
    assert build_prompt(cur, FAMILIES["bare"]) == 's = "{suffix}"'


EXTRA = (Chunk("file:///work/proj/util/helpers.py", "def helper(x):\n    return x * 2\n"),)


def test_extra_context_as_comments_at_the_head_of_the_rules_prompt():
    cur = Cursor("y = $0".replace("$0", ""), "", "python", "file:///work/proj/main.py")
    assert build_prompt(cur, FAMILIES["rules"], EXTRA) == (
        RULES + "# Path: proj/util/helpers.py\n# def helper(x):\n#     return x * 2\n\ny = "
    )


def test_extra_context_uses_the_languages_comment_marker():
    cur = Cursor("let y = ", "", "rust", "file:///main.rs")
    assert build_prompt(cur, FAMILIES["deepseek"], EXTRA).startswith(
        "<｜fim▁begin｜>// Path: proj/util/helpers.py\n// def helper(x):\n"
    )


def test_extra_context_as_repo_level_files_for_qwen_and_starcoder():
    cur = Cursor("y = ", "\n", "python", "file:///work/proj/main.py")
    assert build_prompt(cur, FAMILIES["qwen"], EXTRA) == (
        "<|file_sep|>proj/util/helpers.py\ndef helper(x):\n    return x * 2\n"
        "<|file_sep|>work/proj/main.py\n<|fim_prefix|>y = <|fim_suffix|>\n<|fim_middle|>"
    )
    assert build_prompt(cur, FAMILIES["starcoder"], EXTRA).startswith("<file_sep>proj/util/helpers.py\ndef helper")


def test_bare_prompt_never_gets_extra_context():
    cur = Cursor("y = ", "", "python", "file:///main.py")
    assert build_prompt(cur, FAMILIES["bare"], EXTRA) == "y = "


def test_rules_prompt_is_an_option_with_extra_context():
    cur = cursor_from_snippet("def f(x):\n    return $0")
    assert detect_template(ModelInfo(), "rules") is FAMILIES["rules"]
    assert build_prompt(cur, FAMILIES["rules"]) == RULES + "def f(x):\n    return "


def test_plain_prompt_takes_extra_context_as_comments():
    cur = Cursor("y = ", "", "python", "file:///work/proj/main.py")
    assert build_prompt(cur, FAMILIES["plain"], EXTRA) == (
        "# Path: proj/util/helpers.py\n# def helper(x):\n#     return x * 2\n\n# main.py\ny = "
    )


def test_plain_prompt_names_the_file_in_the_languages_comment():
    assert (
        build_prompt(Cursor("let x = ", "", "rust", "file:///src/lib.rs"), FAMILIES["plain"]) == "// lib.rs\nlet x = "
    )
    assert build_prompt(Cursor("x = ", "", "python", ""), FAMILIES["plain"]) == "x = "


def test_suffix_first_qwen_prompt_grows_only_at_its_tail_while_typing():
    spm = FAMILIES["qwen-spm"]
    # the space before the cursor is left for the model to write with its word
    assert build_prompt(CUR, spm) == "<|fim_prefix|><|fim_suffix|>\n\nprint(f(1))\n<|fim_middle|>def f(x):\n    return"
    at_indent = cursor_from_snippet("def f(x):\n    $0\n")
    assert build_prompt(at_indent, spm).endswith("<|fim_middle|>def f(x):\n")
    assert build_prompt(at_indent, FAMILIES["qwen"]) == "<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n<|fim_middle|>"
    before = build_prompt(cursor_from_snippet("def f(x):\n    retu$0\n\nprint(f(1))\n"), spm)
    after = build_prompt(cursor_from_snippet("def f(x):\n    return x$0\n\nprint(f(1))\n"), spm)
    assert after == before + "rn x"  # what was typed, and nothing before it changed
    psm_before = build_prompt(cursor_from_snippet("def f(x):\n    retu$0\n\nprint(f(1))\n"), FAMILIES["qwen"])
    assert not build_prompt(
        cursor_from_snippet("def f(x):\n    return x$0\n\nprint(f(1))\n"), FAMILIES["qwen"]
    ).startswith(psm_before)
    assert spm.stop == FAMILIES["qwen"].stop and spm.file_fmt == FAMILIES["qwen"].file_fmt


def test_the_raw_baseline_keeps_the_models_own_layout():
    assert own_layout(FAMILIES["qwen-spm"]) is FAMILIES["qwen"]
    assert own_layout(FAMILIES["starcoder"]) is FAMILIES["starcoder"]
