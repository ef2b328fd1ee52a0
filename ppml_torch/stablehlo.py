"""StableHLO out of a JAX function or a converted model, and the files that carry it.

This module only *emits*: text, CHLO legalization, and the ``.mlir`` + ``.safetensors`` +
``.json`` manifest triple written by ``ppml-torch export-stablehlo``.  It runs nothing and
imports no runner; SPU compiling the text lives in :mod:`ppml_torch.runners.compile`, running
an exported program in :func:`ppml_torch.runners.spu.run_exported`.

JAX lowers every program to StableHLO (MLIR) first; SPU's usual JAX frontend then converts that
to an XLA ``HloModuleProto`` and SPU converts it back to MLIR.  SPU 0.9.3 also takes StableHLO
directly (``SourceIRType.STABLEHLO``), and it accepts what JAX 0.4.26 emits, text or MLIR
bytecode, with one exception: JAX leaves a few ops in the CHLO dialect (``chlo.erf`` for exact
GELU, ``chlo.sinh``, ``chlo.tan``, ``chlo.erf_inv``, ``chlo.top_k`` ...), which SPU's parser
does not know::

    error: Dialect `chlo' not found for custom op 'chlo.erf'
    [Enforce fail at libspu/compiler/front_end/fe.cc:57] (module). MLIR parser failure

:func:`to_stablehlo` therefore rewrites CHLO into StableHLO with the MHLO passes that ship in
jaxlib (``chlo-legalize-to-hlo`` then ``hlo-legalize-to-stablehlo``), exactly what JAX does on
its way to HLO.  ``erf`` becomes ``stablehlo.custom_call @mhlo.erf``, which SPU runs with its
own erf approximation, as it does for the XLA route.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import InputFileError, PpmlError

MANIFEST_FORMAT = "ppml-torch-stablehlo/1"

_passes_registered = False
_passes_lock = threading.Lock()


class ExportError(PpmlError, ValueError):
    """Bad input to a StableHLO export (input spec, module path, output name)."""


# -- StableHLO text -----------------------------------------------------------------------------
@runtime_checkable
class ModelFunction(Protocol):
    """A function with its parameters, as :class:`~ppml_torch.model.ConvertedModel` carries
    them: ``apply_fn(params, *inputs)``.  (This module stands below the model container and
    reads only these two attributes and the optional ``source``.)"""

    apply_fn: Callable[..., Any]
    params: Any


def as_function(fn_or_model: Any) -> tuple[Callable[..., Any], tuple[Any, ...], str]:
    """(pure function, leading arguments to prepend, name) of a function or ConvertedModel.

    A ``ConvertedModel`` (a :class:`ModelFunction`) becomes ``model.apply_fn`` with
    ``model.params`` as its first argument.
    """
    if isinstance(fn_or_model, ModelFunction):
        name = getattr(fn_or_model, "source", None) or "model"
        return fn_or_model.apply_fn, (fn_or_model.params,), _identifier(name)
    if not callable(fn_or_model):
        raise TypeError(
            f"expected a JAX function or a ConvertedModel, got {type(fn_or_model).__name__}"
        )
    return fn_or_model, (), _identifier(getattr(fn_or_model, "__name__", "fn"))


def _identifier(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out or "fn"


def lower(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]):
    """``jax.jit(fn).lower`` with every argument kept and SPU's sort patch applied.

    ``keep_unused=True``: jit would otherwise drop arguments the program does not read, and
    SPU's inputs would no longer line up with the caller's.  SPU's frontend patches JAX's sort
    (no float->int bitcast, meaningless on fixed point) while it lowers; do the same.
    """
    import jax

    with spu_jax_patches():
        return jax.jit(fn, keep_unused=True).lower(*args, **kwargs)


@contextlib.contextmanager
def spu_jax_patches():
    """JAX as SPU's frontend traces it: its sort patch applied, under its lock."""
    from spu.utils import frontend as spu_fe

    lock = getattr(spu_fe, "_jax_lock", None) or threading.Lock()
    with lock:
        patches = spu_fe._patch_jax() if hasattr(spu_fe, "_patch_jax") else {}
        try:
            yield
        finally:
            if patches:
                spu_fe._restore_jax_patch(patches)


def legalize_chlo(text: str) -> str:
    """StableHLO text with every ``chlo.*`` op rewritten into StableHLO (no-op without CHLO).

    SPU 0.9.3 cannot parse the CHLO dialect.  The MHLO passes shipped in jaxlib lower CHLO to
    MHLO and MHLO back to StableHLO; ops StableHLO lacks (``erf``) come out as
    ``stablehlo.custom_call @mhlo.<op>``, which SPU understands.
    """
    if "chlo." not in text:
        return text
    from jax._src.interpreters import mlir as jax_mlir
    from jaxlib.mlir import ir, passmanager
    from jaxlib.mlir._mlir_libs import _mlirHlo

    global _passes_registered
    with _passes_lock:
        if not _passes_registered:
            _mlirHlo.register_mhlo_passes()
            _passes_registered = True
    with jax_mlir.make_ir_context():
        module = ir.Module.parse(text)
        pm = passmanager.PassManager.parse(
            "builtin.module(func.func(chlo-legalize-to-hlo),hlo-legalize-to-stablehlo)"
        )
        pm.run(module.operation)
        out = str(module)
    if "chlo." in out:
        left = sorted({w.split("(")[0] for w in out.split() if w.startswith("chlo.")})
        raise NotImplementedError(
            f"StableHLO still holds CHLO ops {left} after legalization; SPU cannot parse them. "
            "Compile this program with ir='xla' instead"
        )
    return out


def to_stablehlo(
    fn_or_model: Any, *example_args: Any, legalize: bool = True, **example_kwargs: Any
) -> str:
    """StableHLO (MLIR text) of a pure JAX function, traced on ``example_args``.

    For a ``ConvertedModel`` the function is ``model.apply`` with ``model.params`` as its first
    argument, so pass only the model's inputs.  Example arguments may be arrays or
    ``jax.ShapeDtypeStruct``; the program's inputs are their flattened leaves (params first for
    a model) in ``jax.tree_util`` order, all kept even when unused.

    ``legalize=True`` (default) rewrites CHLO ops into StableHLO (see :func:`legalize_chlo`), so
    the text is what SPU's ``SourceIRType.STABLEHLO`` accepts; ``False`` gives JAX's own text.
    """
    fn, lead, _ = as_function(fn_or_model)
    text = lower(fn, (*lead, *example_args), example_kwargs).as_text()
    return legalize_chlo(text) if legalize else text


# -- files: .mlir + .safetensors + .json --------------------------------------------------------
def describe_leaves(tree: Any, prefix: str) -> list[dict[str, Any]]:
    """Name, shape and dtype of every leaf, in JAX's flattening order (``params['0.bias']``)."""
    import jax
    import numpy as np

    return [
        {
            "name": prefix + jax.tree_util.keystr(path),
            "shape": [int(d) for d in np.shape(leaf)],
            "dtype": str(np.dtype(leaf.dtype)),
        }
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


@dataclasses.dataclass(frozen=True)
class Export:
    """A StableHLO program as written on disk: text, weights and the manifest.

    ``manifest["inputs"]`` lists the main function's arguments in order (``params[...]`` are the
    weights, found under their torch name in ``weights``; ``args[i]``/``kwargs['name']`` are
    the model's inputs); ``manifest["outputs"]`` its results.
    """

    mlir_path: Path
    text: str
    manifest: dict[str, Any]
    weights: dict[str, Any]  # torch name -> numpy array

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.manifest["outputs"]

    def weight_of(self, input_name: str) -> Any | None:
        """The array of a ``params['...']`` input, ``None`` for a model input."""
        if input_name.startswith("params['") and input_name.endswith("']"):
            return self.weights[input_name[len("params['") : -2]]
        return None


def check_stem(name: str) -> str:
    """An output file stem that stays inside the output folder (no ``/``, ``..``, empty)."""
    bad = not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
    if bad or name.startswith("."):
        raise ExportError(
            f"output name {name!r} would leave the output folder or hide the files; "
            "give a plain file stem such as 'mlp' (no '/', no leading '.')"
        )
    return name


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and prove it is writable (cheap: call it before converting)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".ppml-torch-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise InputFileError(
            f"cannot write into output folder {str(out_dir)!r} ({e.strerror or e}); "
            "pass --out-dir a folder you can write to"
        ) from None
    return out_dir


def write_export(
    out_dir: str | Path,
    name: str,
    text: str,
    weights: Mapping[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    source: str,
) -> tuple[Path, Path, Path]:
    """Write ``NAME.mlir``, ``NAME.safetensors`` and ``NAME.json`` into ``out_dir``.

    ``inputs``/``outputs`` are :func:`describe_leaves` lists; the manifest keeps them in the
    order of the main function's arguments and results.  Returns the three paths.
    """
    import numpy as np
    from safetensors.numpy import save_file

    name = check_stem(name)
    out_dir = prepare_out_dir(out_dir)
    mlir_path, weights_path, manifest_path = (
        out_dir / f"{name}{ext}" for ext in (".mlir", ".safetensors", ".json")
    )
    mlir_path.write_text(text)
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(weights_path))
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": source,
        "mlir": mlir_path.name,
        "weights": weights_path.name,
        "inputs": inputs,  # the order of the StableHLO main function's arguments
        "outputs": outputs,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return mlir_path, weights_path, manifest_path


def read_export(path: str | Path) -> Export:
    """Load an export from its ``.json`` manifest or its ``.mlir`` (the manifest sits beside it).

    Every problem (missing, empty or truncated file, bad JSON, a weight the manifest names but
    the safetensors file lacks) is an :class:`~ppml_torch.errors.InputFileError` naming the file.
    """
    path = Path(path)
    manifest_path = path.with_suffix(".json")
    manifest = _read_json(manifest_path)
    for key in ("mlir", "weights", "inputs", "outputs"):
        if key not in manifest:
            raise InputFileError(
                f"{manifest_path}: no {key!r} entry; it is not a manifest written by "
                "export-stablehlo (re-export the model)"
            )
    base = manifest_path.parent
    mlir_path = base / manifest["mlir"]
    text = _read_text(mlir_path)
    if "func.func" not in text or "@main" not in text:
        raise InputFileError(
            f"{mlir_path}: no main function in it (truncated or not StableHLO); re-export it"
        )
    weights = _read_safetensors(base / manifest["weights"])
    export = Export(mlir_path, text, manifest, weights)
    for entry in export.inputs:
        name = entry.get("name", "")
        if name.startswith("params["):
            try:
                w = export.weight_of(name)
            except KeyError:
                raise InputFileError(
                    f"{base / manifest['weights']}: no weight for manifest input {name}; "
                    "the files come from different exports, re-export the model"
                ) from None
            if list(w.shape) != entry["shape"]:
                raise InputFileError(
                    f"{base / manifest['weights']}: {name} has shape {list(w.shape)}, the "
                    f"manifest says {entry['shape']}; re-export the model"
                )
    return export


def _read_text(path: Path) -> str:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file; check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"{path}: cannot read it ({e}); check the file") from None
    if not text.strip():
        raise InputFileError(f"{path}: the file is empty; re-export it")
    return text


def _read_json(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(
            f"{path}: not valid JSON (line {e.lineno}: {e.msg}); the file is truncated or "
            "edited, re-export it"
        ) from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise InputFileError(f"{path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty; re-export it")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InputFileError(
            f"{path}: not a readable safetensors file ({str(e).splitlines()[0]}); "
            "it is truncated or corrupt, re-export it"
        ) from None
