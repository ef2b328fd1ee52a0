"""Test-run hooks: shared sessions closed at the end, largest MPC errors printed, nothing left
in the temporary folder.

The project's own pytest plugin (``ppml_torch.equivalence.plugin``: ``ppml_equivalence``,
``--ppml-runs``, shared sessions) is loaded here by module name; installed, ppml-torch also
registers it through the ``pytest11`` entry point of the same name (loaded once).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time

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
    left = _left_behind(set())
    if left:  # the shared sessions' folders: gone once they are closed
        pytest.fail(f"left behind in {tempfile.gettempdir()}: {', '.join(sorted(left))}")


# -- nothing left behind ---------------------------------------------------------------------------
# The suite runs with a temporary folder of its own (TMPDIR, inherited by every process it
# starts), so that what other programs on the machine write to /tmp meanwhile is not taken
# for ours; short, since Ray's sockets live under it (runners/secretflow/simulation.py).
LEFT_BEHIND = ("ppml-torch-", "ray")  # what ppml-torch, brpc, SPU and Ray would leave


def pytest_configure(config):
    folder = tempfile.mkdtemp(prefix="pt-")
    config._ppml_tmp = folder, os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_unconfigure(config):
    folder, old = getattr(config, "_ppml_tmp", (None, None))
    if folder is None:
        return
    if old is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old
    tempfile.tempdir = None
    shutil.rmtree(folder, ignore_errors=True)


def _ours() -> set[str]:
    folder = tempfile.gettempdir()
    return {n for n in os.listdir(folder) if n.startswith(LEFT_BEHIND)}


def _left_behind(before: set[str]) -> set[str]:
    """New entries, but for the folders of sessions of this process still open (the shared
    sessions of tests/sessions.py); a process's janitor removes its folders a moment after
    the process ended: waited for up to 10 s.  What is found is removed (and reported)."""
    from ppml_torch.runners.secretflow import scratch

    in_use = {os.path.basename(p) for p in scratch.live()}
    end = time.monotonic() + 10
    while (new := _ours() - before - in_use) and time.monotonic() < end:
        time.sleep(0.2)
    for n in new:
        shutil.rmtree(os.path.join(tempfile.gettempdir(), n), ignore_errors=True)
    return new


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    """Fails a test after which the temporary folder holds a new ``ppml-torch-*`` or Ray
    entry.  A test whose processes keep files on purpose gives them its tmp_path."""
    before = _ours()
    yield
    new = _left_behind(before)
    if new:
        pytest.fail(f"left behind in {tempfile.gettempdir()}: {', '.join(sorted(new))}")


def pytest_terminal_summary(terminalreporter):
    if largest_errors:
        terminalreporter.write_sep("-", "largest MPC vs plaintext error per setting (parity suite)")
        for setting, err in sorted(largest_errors.items()):
            terminalreporter.write_line(f"{setting:<28} {err:.2e}")
