"""Runtimes shared by the whole test run (they are expensive to start), and error records.

A plain module, not conftest.py: pytest imports conftest.py under its own name, so tests that
imported it would get a second copy with its own registry, which nothing would ever close.
"""

from __future__ import annotations

from ppml_torch.runners import Session, open_session

_sessions: dict[tuple, Session] = {}
largest_errors: dict[str, float] = {}


def get_session(backend: str, protocol: str | None = None, field: str | None = None) -> Session:
    """One session per (backend, protocol, field) for the whole run, closed at exit."""
    key = (backend, protocol, field)
    if key not in _sessions:
        if backend == "secretflow":  # SecretFlow runs one runtime per process
            for k in [k for k in _sessions if k[0] == "secretflow"]:
                _sessions.pop(k).close()
        _sessions[key] = open_session(backend, protocol, field)
    return _sessions[key]


def close_all() -> None:
    for s in _sessions.values():
        s.close()
    _sessions.clear()


def record_error(setting: str, err: float) -> None:
    """Keep the largest MPC-vs-plaintext error seen per setting; printed after the run."""
    largest_errors[setting] = max(err, largest_errors.get(setting, 0.0))
