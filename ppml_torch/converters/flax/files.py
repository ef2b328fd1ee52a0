"""Files for the Flax route: torch checkpoints in, Flax parameters (with their spec) out.

A Flax parameter file holds the variables ``{"params": ...}`` and the *spec* of the model
they belong to (family and config, see each family's ``spec``), so the reverse trip needs
nothing else:

* ``.safetensors``: keys are the ``/``-joined Flax paths (``params/Dense_0/kernel``), the
  spec is JSON in the metadata under ``ppml_torch.spec``;
* ``.msgpack``: ``flax.serialization`` of ``{"variables": ..., "spec": "<json>"}``.

Torch checkpoints are read with ``safetensors`` or ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .common import flatten, unflatten

SPEC_KEY = "ppml_torch.spec"
FLAX_SUFFIXES = (".safetensors", ".msgpack")
TORCH_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def _suffix(path: str | os.PathLike[str], allowed: tuple[str, ...], what: str) -> str:
    suffix = Path(path).suffix
    if suffix not in allowed:
        raise ValueError(f"{what} {os.fspath(path)!r}: use one of {', '.join(allowed)}")
    return suffix


def save_flax(path: str | os.PathLike[str], variables: Mapping, spec: Mapping[str, Any]) -> None:
    """Write Flax ``variables`` and the model ``spec`` (format from the file suffix)."""
    arrays = {
        "/".join(k): np.ascontiguousarray(np.asarray(v)) for k, v in flatten(variables).items()
    }
    if _suffix(path, FLAX_SUFFIXES, "Flax params file") == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, os.fspath(path), metadata={SPEC_KEY: json.dumps(spec)})
    else:
        from flax import serialization

        tree = unflatten({tuple(k.split("/")): v for k, v in arrays.items()})
        Path(path).write_bytes(
            serialization.msgpack_serialize({"variables": tree, "spec": json.dumps(spec)})
        )


def load_flax(path: str | os.PathLike[str]) -> tuple[dict, dict[str, Any]]:
    """``(variables, spec)`` from a file written by :func:`save_flax` (numpy arrays)."""
    if _suffix(path, FLAX_SUFFIXES, "Flax params file") == ".safetensors":
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        if SPEC_KEY not in meta:
            raise ValueError(
                f"{os.fspath(path)!r} has no {SPEC_KEY} metadata: not written by save_flax"
            )
        return unflatten({tuple(k.split("/")): v for k, v in arrays.items()}), json.loads(
            meta[SPEC_KEY]
        )
    from flax import serialization

    data = serialization.msgpack_restore(Path(path).read_bytes())
    if not isinstance(data, dict) or set(data) != {"variables", "spec"}:
        raise ValueError(f"{os.fspath(path)!r} was not written by save_flax (keys variables, spec)")
    return data["variables"], json.loads(data["spec"])


def load_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A torch ``state_dict`` from ``.safetensors`` or ``.pt``/``.pth``/``.bin`` (weights only)."""
    import torch

    if _suffix(path, TORCH_SUFFIXES, "torch checkpoint") == ".safetensors":
        from safetensors.torch import load_file

        return load_file(os.fspath(path))
    sd = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(sd, Mapping):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(sd).__name__}, not a state_dict")
    return dict(sd)


def save_torch_state_dict(path: str | os.PathLike[str], state_dict: Mapping[str, Any]) -> None:
    """Write a ``state_dict`` as ``.safetensors`` or with ``torch.save`` (``.pt``/``.pth``/``.bin``).

    Tied tensors (``lm_head.weight``) are written as separate copies in safetensors, which
    does not store shared memory.
    """
    import torch

    if _suffix(path, TORCH_SUFFIXES, "torch checkpoint") == ".safetensors":
        from safetensors.torch import save_file

        save_file(
            {k: v.detach().clone().contiguous() for k, v in state_dict.items()}, os.fspath(path)
        )
    else:
        torch.save(dict(state_dict), os.fspath(path))


def build(spec: Mapping[str, Any]):
    """A torch module for ``spec`` (random weights): the family's ``build``."""
    from . import _families

    families = _families()
    if spec.get("family") not in families:
        raise ValueError(f"unknown model family {spec.get('family')!r}; known: {sorted(families)}")
    return families[spec["family"]].build(dict(spec))
