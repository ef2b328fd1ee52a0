"""Scripts outside the package (bench/, scripts/, examples/, converters/) import ppml_torch's
names inside functions, where no other test reaches them: every such name must exist (catches a
module moved without its callers: bench_cnn.py's two-process part imported
``ppml_torch.cli.launcher`` after the launcher had moved to ``runners/secretflow/``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("bench", "scripts", "examples", "converters")


def imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from ppml_torch... import name`` in ``path``, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ppml_torch"):
            out += [(node.module, a.name) for a in node.names]
    return out


def missing(module: str, name: str) -> bool:
    try:
        m = importlib.import_module(module)
    except ImportError:
        return True
    if hasattr(m, name):
        return False
    try:  # a submodule imported by name
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return True
    return False


SCRIPTS = sorted(p for f in FOLDERS for p in (ROOT / f).glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_import_names_that_exist(path):
    gone = [f"{m}.{n}" for m, n in imports(path) if missing(m, n)]
    assert not gone, f"{path.relative_to(ROOT)} imports names that do not exist: {gone}"


def test_a_moved_name_is_seen(tmp_path):
    script = tmp_path / "old.py"
    script.write_text("def f():\n    from ppml_torch.cli.launcher import pin\n")
    assert [(m, n) for m, n in imports(script) if missing(m, n)] == [
        ("ppml_torch.cli.launcher", "pin")
    ]
