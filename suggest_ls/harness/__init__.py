"""Test harness: the tools that tests and benchmarks use to drive a real ``suggest-ls`` server.

Which client to use when:

- ``raw.RawServer``: synchronous, in bytes. For bad input, framing, floods, fuzzing and soak
  runs: it sends anything (broken headers, invalid JSON, hand-built ids), reads every frame back,
  counts the answers per request id (the exactly-once checks) and reads the server's log.
- ``client.LspClient``: asyncio, timestamped. For replays, latency and quality benchmarks and
  scheduler tests: requests go out without waiting (an editor keeps typing), each ``Call``
  records when it was sent and answered, notifications keep their arrival time.
- pytest-lsp (``tests/e2e/conftest.py``): only for end-to-end tests through a real typed client,
  where lsprotocol checks the server's answers against the LSP types.

Both clients share ``wire``: the server command, framing, reading messages, the answers to the
server's own requests, ``initialize`` parameters, capabilities and LSP positions.

The other tools: ``typist`` (a seeded person typing real files, for typing replays),
``reference`` (an independent model of the client's document and the ``suggest/documentState``
hash) and ``properties`` (hypothesis strategies and properties for documents and framing).
"""
