"""Runtimes shared by the whole test run, and error records.

The shared sessions are the pytest plugin's (``ppml_torch.equivalence.sessions``, closed when
the run ends); this module keeps the names the project's tests import.  A plain module, not
conftest.py: pytest imports conftest.py under its own name, so tests that imported it would
get a second copy with its own registry.
"""

from __future__ import annotations

from ppml_torch.equivalence.sessions import close_all, close_backend, get_session

__all__ = ["close_all", "close_backend", "get_session", "largest_errors", "record_error"]

largest_errors: dict[str, float] = {}


def record_error(setting: str, err: float) -> None:
    """Keep the largest MPC-vs-plaintext error seen per setting; printed after the run."""
    largest_errors[setting] = max(err, largest_errors.get(setting, 0.0))
