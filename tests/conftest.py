"""Shared fixtures: the real engine on the embedded model."""

from __future__ import annotations

import pytest

from suggest_ls.engine import Engine, EngineConfig
from suggest_ls.models import embedded_model_path


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
