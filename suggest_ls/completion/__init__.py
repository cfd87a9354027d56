"""The completion layer: from a cursor in a document to a clean suggestion, in plain data.

The pipeline as verbs: ``context.should_complete`` → ``prompt.build_prompt`` → a backend's
``submit`` (generate) → ``clean.clean``; ``completer`` runs it per document (supersede, debounce,
one request's path) with ``plan`` (what to ask the model at a cursor), ``shown`` (the typing-through
cache), ``deadline`` (first words and the line deadline), ``rerank`` (judging a line, second
opinions) and ``answers`` (each request's record and log line); ``request`` holds the data they
share, and ``stats`` records why each request ended as it did.
"""
