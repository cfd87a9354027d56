"""The LSP layer: the only package that knows pygls and lsprotocol.

JSON-RPC framing and hardening, the transports (stdio, TCP, the parent watch), documents in the
client's position encoding, and the handlers that turn LSP messages into plain requests for the
completion layer and its answers back into LSP results.
"""
