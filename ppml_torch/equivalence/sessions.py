"""Sessions shared by a whole test run (SPU and SecretFlow are expensive to start).

One session per (backend, protocol, field), opened on first use and closed by
:func:`close_all` (the pytest plugin calls it when the run ends).  SecretFlow runs one
runtime per process, so opening a SecretFlow session closes any other SecretFlow one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ppml_torch.runners import Session
    from ppml_torch.runners.runspec import RunSpec

_sessions: dict[tuple[str, str | None, str | None], Session] = {}


def get_session(backend: str, protocol: str | None = None, field: str | None = None) -> Session:
    """The shared session of this runtime, opened on first use."""
    from ppml_torch.runners import open_session

    key = (backend, protocol, field)
    if key in _sessions and getattr(_sessions[key], "_closed", False):
        del _sessions[key]  # closed by its user (or a nested pytest run): open a new one
    if key not in _sessions:
        if backend == "secretflow":
            close_backend("secretflow")
        _sessions[key] = open_session(backend, protocol, field)
    return _sessions[key]


def session_for(run: RunSpec) -> Session:
    """The shared session of a parsed run spec (what ``check_equivalence(sessions=)`` takes)."""
    return get_session(run.backend, run.protocol, run.field)


def open_keys() -> list[tuple[str, str | None, str | None]]:
    return list(_sessions)


def close_backend(backend: str) -> None:
    """Close the shared sessions of one backend (SecretFlow runs one runtime per process)."""
    for k in [k for k in _sessions if k[0] == backend]:
        _sessions.pop(k).close()


def close_all() -> None:
    """Close every shared session."""
    while _sessions:
        _sessions.popitem()[1].close()
