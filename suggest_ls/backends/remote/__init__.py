"""The remote backend: any OpenAI-compatible ``/v1/completions`` server, behind the engine's contract.

``backend.RemoteBackend`` (the worker pool, health and probing with backoff), ``jobs`` (one job's
request and streamed answer), ``probe`` (what an endpoint offers), ``client`` (HTTP, configuration
and errors), ``sse`` (server-sent events) and ``logprobs`` (token log-probabilities).
"""
