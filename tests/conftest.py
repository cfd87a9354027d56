"""Shared fixtures: the real engine on the small embedded model.

Servers the tests spawn serve the small model (Gemma 3 270M) through ``$SUGGEST_LS_MODEL``, for the
suite's time, except where a test clears it to run the default, the coder model: the end-to-end
tests (tests/e2e, tests/editors) and tests/unit/test_models.py's check of the default.
"""

from __future__ import annotations

import os

import pytest

from suggest_ls.backends.llama.engine import Engine
from suggest_ls.backends.llama.loading import EngineConfig
from suggest_ls.backends.models import embedded_model_path

os.environ["SUGGEST_LS_MODEL"] = "small"


def default_model_env() -> dict[str, str]:
    """The environment for a server that serves the default model (the coder model when installed)."""
    return {k: v for k, v in os.environ.items() if k != "SUGGEST_LS_MODEL"}


@pytest.fixture(scope="session")
def model_path():
    """The embedded Gemma 3 270M model, assembled into the cache once."""
    return embedded_model_path()


@pytest.fixture(scope="session")
def engine(model_path):
    """One real engine shared by the engine tests (2 slots, greedy tests set temperature 0)."""
    eng = Engine(EngineConfig(model_path, context_size=2048, parallel=4)).start()
    eng.ready.result(timeout=120)
    yield eng
    eng.close()
