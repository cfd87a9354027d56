"""``textDocument/inlineCompletion`` and ``textDocument/completion``: the server's suggestion for a
position as an LSP item, its range in the client's units, with the command that counts its acceptance."""

from __future__ import annotations

from lsprotocol import types

from suggest_ls.completion.request import Suggestion
from suggest_ls.lsp.document import Document, units_len
from suggest_ls.lsp.features.acceptance import acceptance_command
from suggest_ls.lsp.server import SuggestServer


def edit_range(doc: Document, position: types.Position, suggestion: Suggestion) -> types.Range:
    """The range a suggestion replaces: the cursor plus the closers it covers."""
    line = doc.line(position.line) if position.line < doc.line_count else ""
    start_index = doc.offset(position.line, position.character) - doc.offset(position.line, 0)
    covered = line[start_index : start_index + suggestion.replace]
    end = types.Position(position.line, position.character + units_len(covered, doc.encoding))
    return types.Range(start=position, end=end)


async def inline_completion(ls: SuggestServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    """The suggestion as one inline item (none when there is no suggestion)."""
    manual = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    got = await ls.suggest(params.text_document.uri, params.position, manual)
    if got is None or not got[1].text:
        return types.InlineCompletionList(items=[])
    doc, suggestion = got
    item = types.InlineCompletionItem(
        insert_text=suggestion.text,
        range=edit_range(doc, params.position, suggestion),
        command=acceptance_command(
            ls, params.text_document.uri, suggestion.text, doc.offset(params.position.line, params.position.character)
        ),
    )
    return types.InlineCompletionList(items=[item])


async def completion(ls: SuggestServer, params: types.CompletionParams) -> types.CompletionList:
    """The suggestion as one completion item, for clients without inline completion."""
    manual = params.context is None or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
    got = await ls.suggest(params.text_document.uri, params.position, manual)
    if got is None or not got[1].text:
        return types.CompletionList(is_incomplete=True, items=[])
    doc, suggestion = got
    first = suggestion.text.split("\n", 1)[0].strip() or suggestion.text.strip()
    item = types.CompletionItem(
        label=first[:80],
        kind=types.CompletionItemKind.Text,
        detail="suggest-ls",
        filter_text=doc.line(params.position.line)[
            : doc.offset(params.position.line, params.position.character) - doc.offset(params.position.line, 0)
        ]
        + suggestion.text,
        text_edit=types.TextEdit(range=edit_range(doc, params.position, suggestion), new_text=suggestion.text),
        insert_text_format=types.InsertTextFormat.PlainText,
        sort_text="0",
        command=acceptance_command(ls, params.text_document.uri, suggestion.text),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def register(server: SuggestServer) -> None:
    """Register inline and classic completion."""
    server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(inline_completion)
    server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", "="], resolve_provider=False),
    )(completion)
