"""The backends: whatever turns a ``contract.GenRequest`` into a ``contract.GenResult``.

``llama`` runs llama.cpp in-process (one thread owns it), ``remote`` talks to an OpenAI-compatible
server, ``switchable`` swaps either kind without a gap. ``models``, ``gguf`` and ``quantize`` find,
check and convert model files; ``device`` reads the GPU. Nothing here imports the layers above.
"""
