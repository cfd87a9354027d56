"""suggest-ls: a local code-suggestion language server on llama.cpp."""

__version__ = "0.1.0"
