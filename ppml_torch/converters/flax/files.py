"""Files for the Flax route: torch checkpoints in, Flax parameters (with their spec) out.

A Flax parameter file holds the variables ``{"params": ...}`` and the *spec* of the model
they belong to (family and config, see each family's ``spec``), so the reverse trip needs
nothing else:

* ``.safetensors``: keys are the ``/``-joined Flax paths (``params/Dense_0/kernel``), the
  spec is JSON in the metadata under ``ppml_torch.spec``;
* ``.msgpack``: ``flax.serialization`` of ``{"variables": ..., "spec": "<json>"}``.

Torch checkpoints are read with ``safetensors`` or ``torch.load(..., weights_only=True)``
(no pickled code runs).  A missing, empty, truncated or foreign file is an
:class:`~ppml_torch.errors.InputFileError` (one line), never a raw library traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppml_torch.errors import InputFileError, PpmlError

from .common import flatten, unflatten

SPEC_KEY = "ppml_torch.spec"
FLAX_SUFFIXES = (".safetensors", ".msgpack")
TORCH_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")

PathLike = str | os.PathLike[str]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch colours parts of its messages


def check_suffix(path: PathLike, allowed: tuple[str, ...], what: str) -> str:
    """The suffix of ``path`` if it is one of ``allowed``; an error naming them otherwise."""
    suffix = Path(path).suffix
    if suffix not in allowed:
        raise InputFileError(f"{what} {os.fspath(path)!r}: use one of {', '.join(allowed)}")
    return suffix


def check_input_file(path: PathLike, what: str) -> Path:
    """``path`` as a :class:`Path` if it is an existing, non-empty file."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} {os.fspath(path)!r}: no such file")
    if not p.is_file():
        raise InputFileError(f"{what} {os.fspath(path)!r}: not a file")
    if p.stat().st_size == 0:
        raise InputFileError(f"{what} {os.fspath(path)!r}: the file is empty")
    return p


def check_output_file(path: PathLike, what: str, *, inputs: tuple[PathLike, ...] = ()) -> Path:
    """``path`` as a :class:`Path` if a file can be written there without losing an input.

    Refused: an existing folder, a folder that does not exist or cannot be written, and any
    of ``inputs`` (writing the result over the file it is read from).
    """
    p = Path(path)
    if p.is_dir():
        raise InputFileError(f"{what} {os.fspath(path)!r} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputFileError(
            f"{what} {os.fspath(path)!r}: {os.fspath(parent)!r} is not an existing folder; "
            f"create it or choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputFileError(f"{what} {os.fspath(path)!r}: not writable; choose another path")
    for src in inputs:
        if Path(src).exists() and p.exists() and p.resolve() == Path(src).resolve():
            raise InputFileError(
                f"{what} {os.fspath(path)!r} is also an input; write the result to another file"
            )
    return p


@contextlib.contextmanager
def reading(path: PathLike, what: str, fix: str) -> Iterator[None]:
    """Turn any failure of a third-party reader into one :class:`InputFileError` line."""
    try:
        yield
    except PpmlError:
        raise
    except Exception as e:  # noqa: BLE001 - readers raise many types; the cause is in the message
        raise InputFileError(
            f"{what} {os.fspath(path)!r} cannot be read ({_one_line(e)}); {fix}"
        ) from e


@contextlib.contextmanager
def writing(path: PathLike, what: str) -> Iterator[None]:
    """Turn a failure while writing ``path`` into one :class:`InputFileError` line (writers
    raise their own types: OSError, torch.save's RuntimeError, SafetensorError)."""
    try:
        yield
    except PpmlError:
        raise
    except Exception as e:  # noqa: BLE001 - the cause is in the message
        raise InputFileError(
            f"{what} {os.fspath(path)!r} cannot be written ({_one_line(e)}); choose another path"
        ) from e


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(_ANSI.sub("", str(e)).split()) or "no message"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}"


def save_flax(path: PathLike, variables: Mapping, spec: Mapping[str, Any]) -> None:
    """Write Flax ``variables`` and the model ``spec`` (format from the file suffix)."""
    suffix = check_suffix(path, FLAX_SUFFIXES, "Flax params file")
    arrays = {
        "/".join(k): np.ascontiguousarray(np.asarray(v)) for k, v in flatten(variables).items()
    }
    with writing(path, "Flax params file"):
        if suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, os.fspath(path), metadata={SPEC_KEY: json.dumps(spec)})
        else:
            from flax import serialization

            tree = unflatten({tuple(k.split("/")): v for k, v in arrays.items()})
            Path(path).write_bytes(
                serialization.msgpack_serialize({"variables": tree, "spec": json.dumps(spec)})
            )


def load_flax(path: PathLike) -> tuple[dict, dict[str, Any]]:
    """``(variables, spec)`` from a file written by :func:`save_flax` (numpy arrays)."""
    what = "Flax params file"
    suffix = check_suffix(path, FLAX_SUFFIXES, what)
    check_input_file(path, what)
    fix = "it is truncated or was not written by ppml-torch to-flax"
    if suffix == ".safetensors":
        from safetensors import safe_open

        with reading(path, what, fix), safe_open(os.fspath(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        if SPEC_KEY not in meta:
            raise InputFileError(
                f"{what} {os.fspath(path)!r} has no {SPEC_KEY} metadata: not written by "
                f"ppml-torch to-flax (save_flax)"
            )
        variables = unflatten({tuple(k.split("/")): v for k, v in arrays.items()})
        spec_text = meta[SPEC_KEY]
    else:
        from flax import serialization

        with reading(path, what, fix):
            data = serialization.msgpack_restore(Path(path).read_bytes())
        if not isinstance(data, dict) or set(data) != {"variables", "spec"}:
            raise InputFileError(
                f"{what} {os.fspath(path)!r} was not written by ppml-torch to-flax (save_flax): "
                f"expected the keys variables, spec"
            )
        variables, spec_text = data["variables"], data["spec"]
    with reading(path, f"the spec in {what}", fix):
        spec = json.loads(spec_text)
    if not isinstance(spec, dict) or not isinstance(spec.get("family"), str):
        raise InputFileError(
            f"{what} {os.fspath(path)!r}: its spec is not a JSON object with a family; {fix}"
        )
    if not isinstance(variables, dict) or not isinstance(variables.get("params"), Mapping):
        raise InputFileError(f"{what} {os.fspath(path)!r} holds no Flax 'params' tree; {fix}")
    return variables, spec


def load_torch_state_dict(path: PathLike) -> dict[str, Any]:
    """A torch ``state_dict`` from ``.safetensors`` or ``.pt``/``.pth``/``.bin``.

    ``.pt``/``.pth``/``.bin`` are read with ``torch.load(weights_only=True)``: a file that
    needs pickled code to load is refused, not run.
    """
    import torch

    what = "torch checkpoint"
    suffix = check_suffix(path, TORCH_SUFFIXES, what)
    check_input_file(path, what)
    fix = "it is truncated, or not a state_dict of tensors (torch.save(model.state_dict()))"
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        with reading(path, what, fix):
            return load_file(os.fspath(path))
    try:
        with reading(path, what, fix):
            sd = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except InputFileError as e:
        if isinstance(e.__cause__, pickle.UnpicklingError):
            raise InputFileError(
                f"{what} {os.fspath(path)!r} holds pickled objects other than tensors, which "
                f"torch.load(weights_only=True) does not run; save model.state_dict() or use "
                f".safetensors"
            ) from e.__cause__
        raise
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputFileError(
            f"{what} {os.fspath(path)!r} holds a {type(sd).__name__}, not a state_dict of "
            f"tensors; save model.state_dict()"
        )
    return dict(sd)


def save_torch_state_dict(path: PathLike, state_dict: Mapping[str, Any]) -> None:
    """Write a ``state_dict`` as ``.safetensors`` or with ``torch.save`` (``.pt``/``.pth``/``.bin``).

    Tied tensors (``lm_head.weight``) are written as separate copies in safetensors, which
    does not store shared memory.
    """
    import torch

    suffix = check_suffix(path, TORCH_SUFFIXES, "torch checkpoint")
    with writing(path, "torch checkpoint"):
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(
                {k: v.detach().clone().contiguous() for k, v in state_dict.items()},
                os.fspath(path),
            )
        else:
            torch.save(dict(state_dict), os.fspath(path))


# A module built from a file's spec may hold at most this much more than the file's arrays
# (buffers that are not saved, such as attention masks, and tied weights counted once).
SPEC_SLACK_BYTES = 64 * 2**20


def build(spec: Mapping[str, Any], *, holds_bytes: int | None = None):
    """A torch module for ``spec`` (random weights): its family's ``build``.

    ``holds_bytes``: the size of the arrays the spec came with.  The module is then first
    built on torch's ``meta`` device (shapes only, no memory) and refused when it would need
    more than twice that plus :data:`SPEC_SLACK_BYTES`: a small file whose spec claims a huge
    model is one line, not gigabytes of random weights.
    """
    from .registry import get

    family = get(spec.get("family"))
    try:
        if holds_bytes is not None:
            import torch

            with torch.device("meta"):
                shapes_only = family.build(dict(spec))
            need = _module_bytes(shapes_only)
            if need > 2 * holds_bytes + SPEC_SLACK_BYTES:
                raise InputFileError(
                    f"this {family.name} spec describes a model of {need / 2**20:.1f} MiB but its "
                    f"file holds {holds_bytes / 2**20:.1f} MiB of arrays: the spec does not "
                    "match the params; write the params with ppml-torch to-flax"
                )
        return family.build(dict(spec))
    except PpmlError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
        raise InputFileError(
            f"this {family.name} spec does not describe a model ({_one_line(e)}); "
            f"write the params with ppml-torch to-flax"
        ) from e


def _module_bytes(module: Any) -> int:
    """Bytes of a module's parameters and buffers (tied tensors once)."""
    seen, total = set(), 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def arrays_bytes(variables: Mapping) -> int:
    """Bytes of every array in a (nested) Flax variables dict."""
    return sum(int(np.asarray(v).nbytes) for v in flatten(variables).values())
