"""Shared fixtures: runtimes are expensive to start, so each is started once per test run."""

from __future__ import annotations

import importlib.util

import pytest

# `import ray` (SecretFlow imports it) runs logging.config.dictConfig, which closes every logging
# handler already made, including absl's, whose stream is the console pytest had swapped in when
# jax/flax first imported absl during collection: pytest's capture then fails on a closed file.
# Importing ray before anything else makes that happen while no such handler exists.
if importlib.util.find_spec("ray") is not None:
    import ray  # noqa: F401

from ppml_torch.runners import open_session

_sessions: dict = {}


def get_session(backend: str, protocol: str | None = None, field: str | None = None):
    """One session per (backend, protocol, field) for the whole run, closed at exit."""
    key = (backend, protocol, field)
    if key not in _sessions:
        if backend == "secretflow":  # SecretFlow runs one runtime per process
            for k in [k for k in _sessions if k[0] == "secretflow"]:
                _sessions.pop(k).close()
        _sessions[key] = open_session(backend, protocol, field)
    return _sessions[key]


@pytest.fixture(scope="session", autouse=True)
def _close_sessions():
    yield
    for s in _sessions.values():
        s.close()
    _sessions.clear()

