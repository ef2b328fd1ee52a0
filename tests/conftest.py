"""Test-run hooks: shared sessions closed at the end, largest MPC errors printed.

The project's own pytest plugin (``ppml_torch.equivalence.plugin``: ``ppml_equivalence``,
``--ppml-runs``, shared sessions) is loaded here by module name; installed, ppml-torch also
registers it through the ``pytest11`` entry point of the same name (loaded once).
"""

from __future__ import annotations

import importlib.util

import pytest

# `import ray` (SecretFlow imports it) runs logging.config.dictConfig, which closes every logging
# handler already made, including absl's, whose stream is the console pytest had swapped in when
# jax/flax first imported absl during collection: pytest's capture then fails on a closed file.
# Importing ray before anything else makes that happen while no such handler exists.
if importlib.util.find_spec("ray") is not None:
    import ray  # noqa: F401

from tests.sessions import close_all, largest_errors

pytest_plugins = ["ppml_torch.equivalence.plugin", "pytester"]


@pytest.fixture(scope="session", autouse=True)
def _close_sessions():
    yield
    close_all()


def pytest_terminal_summary(terminalreporter):
    if largest_errors:
        terminalreporter.write_sep("-", "largest MPC vs plaintext error per setting (parity suite)")
        for setting, err in sorted(largest_errors.items()):
            terminalreporter.write_line(f"{setting:<28} {err:.2e}")
