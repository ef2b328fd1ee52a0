"""runners/ and converters/ do not import each other in a circle.

Converters import no runner (they produce JAX functions and files); runners may use the
StableHLO emission module, which imports no runner.  Checked on the source (every import
statement, also those inside functions) and by importing the converter modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "ppml_torch"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the ppml_torch modules a file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if path.name == "__init__.py":
        module = module.removesuffix(".__init__")
        package = module
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("ppml_torch")}


def files(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


def test_importing_converters_loads_no_runner():
    code = (
        "import sys, ppml_torch.stablehlo, ppml_torch.converters.torch_to_stablehlo, "
        "ppml_torch.converters.fx.converter; "
        "print(sorted(m for m in sys.modules if m.startswith('ppml_torch.runners')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PKG.parent, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
