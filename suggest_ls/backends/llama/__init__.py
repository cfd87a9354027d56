"""The in-process llama.cpp backend: ``engine.Engine`` and the parts its thread works with.

``loading`` (the model and its context), ``slots`` (jobs, slots and prompt caching), ``sampling``
(reading logits), ``drafts`` (drafting from the job's own text), ``tuner`` (threads per step).
"""
