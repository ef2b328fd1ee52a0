"""ppml_torch/train/__init__.py: ``fit`` and ``predict`` importable from the package and from
``ppml_torch``, cheaply (torch and optax come in when fit runs), with no lazy re-export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_cheap_and_the_same_functions():
    code = (
        "import sys; from ppml_torch.train import fit, predict, vertical, History; "
        "import ppml_torch, ppml_torch.train as t; "
        "assert ppml_torch.fit is fit is t.fit and ppml_torch.predict is predict; "
        "assert not hasattr(t, '__getattr__'); "
        "print(sorted(m for m in ('torch', 'optax', 'flax', 'tqdm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
