"""The completion layer: from a cursor in a document to a clean suggestion, in plain data.

The pipeline as verbs: ``context.should_complete`` → ``prompt.build_prompt`` → a backend's
``submit`` (generate) → ``clean.clean``; ``completer`` runs it per document (debounce, supersede,
typing-through cache, the line deadline) and ``stats`` records why each request ended as it did.
"""
