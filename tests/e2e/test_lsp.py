"""End to end over stdio: a real client, the real server, the embedded model."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from suggest_ls.lsp.document import utf16_len

from .conftest import CAPABILITIES, SERVER, inline, open_doc, wait_ready
from .conftest import status as get_status

FUNC = "def add(a, b):\n    return "


async def test_initialize_advertises_inline_and_completion(client: LanguageClient):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider
    assert caps.completion_provider is not None
    sync = caps.text_document_sync
    assert getattr(sync, "change", sync) == types.TextDocumentSyncKind.Incremental


async def test_model_load_is_reported_as_progress(client: LanguageClient):
    kinds = [r.kind for reports in client.progress_reports.values() for r in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end"


async def test_suggestion_for_a_plain_function(client: LanguageClient):
    uri = "file:///tmp/add.py"
    open_doc(client, uri, FUNC)
    result = await inline(client, uri, 1, 11)
    assert len(result.items) == 1
    item = result.items[0]
    assert "a" in item.insert_text and "b" in item.insert_text
    assert item.range.start == types.Position(1, 11)


async def test_range_is_utf16_after_emoji_and_cjk(client: LanguageClient):
    uri = "file:///tmp/emoji.py"
    line = 'label = "😀中文" + str('
    text = "def show(x):\n    " + line
    open_doc(client, uri, text + ")\n")
    character = utf16_len("    " + line)
    result = await inline(client, uri, 1, character, invoked=True)
    assert result.items, "expected a suggestion"
    item = result.items[0]
    assert item.range.start == types.Position(1, character)
    # the range may cover the closing parenthesis, counted in UTF-16 units
    assert item.range.end.character in (character, character + 1)
    if item.range.end.character == character + 1:
        assert item.insert_text.endswith(")")


async def test_completion_fallback_returns_one_text_edit(client: LanguageClient):
    uri = "file:///tmp/fallback.py"
    open_doc(client, uri, FUNC)
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(1, 11),
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )
    assert len(result.items) == 1
    edit = result.items[0].text_edit
    assert edit.range.start == types.Position(1, 11)
    assert edit.new_text.strip()


async def test_settings_change_applies(client: LanguageClient):
    uri = "file:///tmp/settings.py"
    open_doc(client, uri, FUNC)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"suggestLs": {"enabled": False}})
    )
    result = await inline(client, uri, 1, 11)
    assert len(result.items) == 0
    status = await get_status(client)
    assert _get(status, "state") == "disabled"
    assert _get(_get(status, "recentReasons")[0], "reason") == "disabled"
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"suggestLs": {"enabled": True}})
    )
    result = await inline(client, uri, 1, 11)
    assert len(result.items) == 1


async def test_invalid_setting_is_reported_and_ignored(client: LanguageClient):
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"suggestLs": {"parallel": "many"}})
    )
    await asyncio.sleep(0.2)
    assert any("parallel" in m.message for m in client.messages)


async def test_cancelled_request_gets_the_cancel_error(client: LanguageClient):
    uri = "file:///tmp/cancel.py"
    long_text = "".join(f"def function_{i}(value):\n    return value * {i}\n\n" for i in range(300))
    open_doc(client, uri, long_text + "def last(x):\n    return ")
    line = long_text.count("\n") + 1
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=11),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )
    pending = asyncio.ensure_future(
        client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="cancel-me")
    )
    await asyncio.sleep(0.2)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    with pytest.raises(JsonRpcException) as caught:
        await pending
    assert caught.value.code == -32800
    # the server keeps serving
    open_doc(client, "file:///tmp/after.py", FUNC)
    result = await inline(client, "file:///tmp/after.py", 1, 11)
    assert len(result.items) == 1


async def test_stale_version_is_never_returned(client: LanguageClient):
    # the same text in another document gets a suggestion: the stale one would have had one too
    open_doc(client, "file:///tmp/fresh.py", FUNC)
    assert len((await inline(client, "file:///tmp/fresh.py", 1, 11)).items) == 1
    # a long debounce keeps the request in the server while the document changes under it
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"suggestLs": {"debounceMs": 1500}})
    )
    uri = "file:///tmp/stale.py"
    open_doc(client, uri, FUNC)
    task = asyncio.ensure_future(inline(client, uri, 1, 11))
    await asyncio.sleep(0)  # the request goes out first
    # messages are read in order: once this is answered, the request was read at version 1
    await get_status(client)
    assert not task.done()
    # an edit away from the cursor (line 0): nothing but the version tells the answer is stale
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(0, 14), types.Position(0, 14)), text="  # sum"
                )
            ],
        )
    )
    result = await task
    assert len(result.items) == 0


async def test_unknown_document_and_impossible_position_give_empty(client: LanguageClient):
    result = await inline(client, "file:///never/opened.py", 0, 0)
    assert len(result.items) == 0
    open_doc(client, "file:///tmp/short.py", "x = 1\n")
    result = await inline(client, "file:///tmp/short.py", 40, 3)
    assert len(result.items) == 0


def _get(obj, key):
    return obj[key]


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def bad_model_client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options={"model": "/nonexistent/model.gguf"})
    )
    yield
    await lsp_client.shutdown_session()


async def test_bad_model_path_gives_a_clear_message_and_the_server_stays_up(
    bad_model_client: LanguageClient, model_path
):
    status = await wait_ready(bad_model_client)
    assert _get(status, "state") == "error"
    assert "not found" in _get(status, "reason")
    await asyncio.sleep(0.1)
    assert any("/nonexistent/model.gguf" in m.message for m in bad_model_client.messages)
    open_doc(bad_model_client, "file:///tmp/x.py", FUNC)
    result = await inline(bad_model_client, "file:///tmp/x.py", 1, 11)
    assert len(result.items) == 0
    # pointing the setting at a good model recovers without a restart
    bad_model_client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"suggestLs": {"model": str(model_path)}})
    )
    await asyncio.sleep(0.1)
    status = await wait_ready(bad_model_client)
    assert _get(status, "state") == "ready"
    result = await inline(bad_model_client, "file:///tmp/x.py", 1, 11)
    assert len(result.items) == 1
