"""The layers of the package, read from the imports of every module (lazy ones included).

From the bottom: the base modules every layer may use (``errors.py``, ``model.py`` with
:class:`~ppml_torch.model.ConvertedModel`, and the low-level ``weights.py``/``dtypes.py``),
which import only each other; ``models/`` and ``converters/`` (converters may use models), then
``runners/`` (which know only JAX functions and :class:`~ppml_torch.model.ConvertedModel`),
then the features users call by name (``train/``, ``generation/``, ``equivalence/``,
``calibration/``, ``profiling/``), then the applications (``apps/``), and the command line (``cli/``) on top.
A module may import from its own layer and the layers below it, never from above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ppml_torch"

FEATURES = ("train", "generation", "equivalence", "calibration", "profiling")  # above runners
# package under ppml_torch -> packages it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": ("converters", "runners", *FEATURES, "apps", "cli"),
    "converters": ("runners", *FEATURES, "apps", "cli"),
    "runners": ("converters", "models", *FEATURES, "apps", "cli"),
    **{f: ("apps", "cli") for f in FEATURES},
    "apps": ("cli",),
}
# modules outside the packages above (ppml_torch/*.py): the library's own root
ROOT_FORBIDDEN = ("apps", "cli")
# root modules below everything: they import only each other
BASE = ("errors", "model", "weights", "dtypes", "stablehlo", "dropout")
ENTRY_POINTS = {"ppml_torch.__main__"}  # `python -m ppml_torch` is the command line itself

# Known violations, each with the issue that will fix it; test_allowed_violations_still_exist
# fails once an entry is stale.  Empty: keep it so.
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute; ``from a import b`` gives ``a``, and ``a.b``
    too when ``b`` is a module of this repository."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names if is_module(f"{mod}.{a.name}"))
    return found


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    """ppml_torch module -> the ppml_torch modules it imports."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        out[module_name(path)] = {m for m in imports(path) if m.split(".")[0] == "ppml_torch"}
    return out


def layer_of(mod: str) -> str:
    """``ppml_torch.runners.spu`` -> ``runners``; the root's modules and packages not listed -> ""."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and (parts[1] in FORBIDDEN or parts[1] == "cli") else ""


def violations(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for mod, targets in edges.items():
        if mod in ENTRY_POINTS:
            continue
        banned = () if layer_of(mod) == "cli" else FORBIDDEN.get(layer_of(mod), ROOT_FORBIDDEN)
        parts = mod.split(".")
        base = len(parts) == 2 and parts[1] in BASE
        for target in targets:
            t = target.split(".")
            if len(t) > 1 and (t[1] in banned or (base and t[1] not in BASE)):
                found.add((mod, target))
    return found


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return graph()


def test_the_reader_sees_the_imports_it_should(edges):
    """The parser itself: relative, lazy and ``from package import module`` forms resolve."""
    assert len(edges) > 40
    # `from ..apps.homework import report` inside run(): relative, two levels, in a function
    assert "ppml_torch.apps.homework.report" in edges["ppml_torch.cli.homework_mlp"]
    # `from .model import ConvertedModel` in the package's __init__
    assert "ppml_torch.model" in edges["ppml_torch"]
    assert "ppml_torch.converters.fx.ops.elementwise" in edges["ppml_torch.converters.fx.ops"]


def test_a_new_violation_is_caught():
    fake = {
        "ppml_torch.runners.cpu": {"ppml_torch.converters.fx", "ppml_torch.model"},
        "ppml_torch.models.mlp": {"ppml_torch.runners"},
        "ppml_torch.converters.fx.program": {"ppml_torch.cli"},
        "ppml_torch.runners.runspec": {"ppml_torch.apps.homework.data"},
        "ppml_torch.apps.homework.report": {"ppml_torch.runners", "ppml_torch.cli"},
        "ppml_torch.cli.ops": {"ppml_torch.apps.homework", "ppml_torch.converters.fx.table"},
        "ppml_torch.__main__": {"ppml_torch.cli"},
        "ppml_torch.model": {
            "ppml_torch.errors",
            "ppml_torch.dtypes",
            "ppml_torch.runners.runspec",
        },
        "ppml_torch.weights": {"ppml_torch.models.mlp"},
    }
    assert violations(fake) == {
        ("ppml_torch.runners.cpu", "ppml_torch.converters.fx"),
        ("ppml_torch.models.mlp", "ppml_torch.runners"),
        ("ppml_torch.converters.fx.program", "ppml_torch.cli"),
        ("ppml_torch.runners.runspec", "ppml_torch.apps.homework.data"),
        ("ppml_torch.apps.homework.report", "ppml_torch.cli"),
        ("ppml_torch.model", "ppml_torch.runners.runspec"),
        ("ppml_torch.weights", "ppml_torch.models.mlp"),
    }


def test_no_module_imports_from_a_layer_above_it(edges):
    new = sorted(violations(edges) - ALLOWED)
    assert not new, "imports up the layers (see this file's docstring):\n" + "\n".join(
        f"  {mod} imports {target}" for mod, target in new
    )


def test_allowed_violations_still_exist(edges):
    stale = sorted(ALLOWED - violations(edges))
    assert not stale, "fixed, remove from ALLOWED in tests/test_layers.py: " + ", ".join(
        f"{mod} -> {target}" for mod, target in stale
    )


# -- floors, circles, argparse, private names ---------------------------------------------------

# The one import circle allowed, lazy re-exports included: the op registry's (the registry
# imports the lowering families, which register themselves in it).
ALLOWED_CIRCLES = ("ppml_torch.converters.fx.registry",)


def circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def room_of(mod: str) -> str:
    """``ppml_torch.runners.spu`` -> ``runners/``; a root module -> its file; the package's own
    ``__init__`` -> ``__init__.py``."""
    parts = mod.split(".")
    if len(parts) == 1:
        return "__init__.py"
    if (PACKAGE / parts[1]).is_dir():
        return parts[1] + "/"
    return parts[1] + ".py"


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each room's floor: one above every room it imports (folders and root modules as rooms,
    every import counted, lazy ones too)."""
    rooms: dict[str, set[str]] = {}
    for mod, targets in edges.items():
        here = room_of(mod)
        rooms.setdefault(here, set()).update(
            room_of(t) for t in targets if t in edges and room_of(t) != here
        )
    assert not circles(rooms), f"rooms import each other in a circle: {circles(rooms)}"
    out: dict[str, int] = {}

    def floor(r: str) -> int:
        if r not in out:
            out[r] = 1 + max((floor(t) for t in rooms[r]), default=0)
        return out[r]

    for r in rooms:
        floor(r)
    return out


def test_no_import_circle_but_the_op_registrys(edges):
    """Lazy re-exports count: ``from . import x`` inside a package's ``__getattr__`` makes the
    package import ``x``; ``x`` importing the package back (``from . import y``) closes a
    circle."""
    extra = [sorted(c) for c in circles(edges) if not any(a in c for a in ALLOWED_CIRCLES)]
    assert not extra, f"import circles: {extra}"
    fake = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert circles(fake) == [{"p.a", "p.b", "p.c"}]


def test_at_most_nine_floors(edges):
    """Drawn from every import with folders as rooms.  Nine since ``train/`` builds on
    ``calibration/`` (fit's range check before MPC, issue 19): errors, dtypes/weights, model,
    runners/converters, calibration, train, apps, cli, ``__main__``; one more import upwards
    (``runners/`` importing ``train/``, say) makes ten."""
    got = floors(edges)
    top = max(got.values())
    by_floor = sorted(got.items(), key=lambda kv: -kv[1])
    assert top <= 9, f"{top} floors (at most 9): {by_floor}"
    fake = {
        "ppml_torch.errors": set(),
        "ppml_torch.runners.a": {"ppml_torch.errors"},
        "ppml_torch.runners.b": {"ppml_torch.runners.a"},  # inside one room: no floor
        "ppml_torch.cli.x": {"ppml_torch.runners.b"},
    }
    assert floors(fake) == {"errors.py": 1, "runners/": 2, "cli/": 3}


def module_level_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is imported: statements at module level (inside a
    module-level ``if``/``try`` too, ``if TYPE_CHECKING:`` excepted), not inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    mod = ".".join(
                        base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
                    )
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names if is_module(f"{mod}.{a.name}"))

    visit(ast.parse(path.read_text(), filename=str(path)).body)
    return {m for m in found if m.split(".")[0] == "ppml_torch"}


def test_at_most_eight_floors_by_module_level_imports():
    """Issue 18's measure: the floors drawn from module-level imports (what importing a module
    loads), folders as rooms, at most 8.  A module-level import of ``train`` in ``runners``
    (say) would add floors; function-level imports are counted by the test above."""
    edges = {module_name(p): module_level_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
    got = floors(edges)
    top = max(got.values())
    assert top <= 8, f"{top} floors (at most 8): {sorted(got.items(), key=lambda kv: -kv[1])}"


def test_argparse_only_under_cli():
    users = [
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        if "argparse" in imports(p) and p.parent.name != "cli"
    ]
    assert not users, f"argparse outside ppml_torch/cli/: {users}"


def test_no_module_imports_another_modules_private_names():
    """``from .x import _name`` reaches into another module's insides; give the name a public
    one where it is defined."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.level or "ppml_torch" in (node.module or "")
            ):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {', '.join(private)}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)
