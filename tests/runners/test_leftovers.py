"""JAX's empty folder is removed (catches: every process that imports JAX left an empty
``tmpXXXXXXXX`` in the temporary folder, one per launch party and per command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SESSION = """
import numpy as np
from ppml_torch.runners import open_session
with open_session("cpu") as s:
    s.reveal(s.put(np.ones(3, np.float32), "alice"))
"""
BARE = "import jax._src.compiler"


def _left(tmp_path: Path, code: str) -> list[str]:
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    return sorted(os.listdir(tmp_path))


def test_a_session_leaves_nothing_in_the_temporary_folder(tmp_path):
    assert _left(tmp_path, SESSION) == []


def test_jax_alone_leaves_its_folder(tmp_path):
    """The case the module is for: without it, JAX's folder stays."""
    left = _left(tmp_path, BARE)
    assert len(left) == 1 and left[0].startswith("tmp")
    assert not os.listdir(tmp_path / left[0])  # empty
