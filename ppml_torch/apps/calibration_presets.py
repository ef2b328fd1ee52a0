"""Models and sample data for ``ppml-torch calibrate``: the two built-in models, random inputs.

* :func:`homework_mlp` -- the breast-cancer MLP [30, 15, 8, 1] (ReLU) as a torch module,
  trained in plaintext with the homework's recipe, and the training features as the sample;
* :func:`tiny_gpt2` -- a seeded Hugging Face ``GPT2LMHeadModel`` (2 layers, width 64,
  vocabulary 256) and random token ids;
* :func:`sample_inputs` -- inputs for a model spec: given ``.npy`` files, or random ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, PpmlError


class SampleError(PpmlError, ValueError):
    """Sample inputs that do not match the model's input specs."""


def homework_mlp(*, seed: int = 0, epochs: int = 10) -> tuple[Any, tuple[np.ndarray], str]:
    """The homework MLP trained in plaintext torch (SGD 0.01, batch 10, ``mean((y-p)**2/2)``).

    Returns ``(module, (x_train,), description)``; ``x_train`` is the 455 training rows of
    the breast-cancer set, min-max normalised per feature (``ppml_torch.apps.homework.data.load_data``).
    ``epochs=0`` keeps the initial weights.
    """
    import torch

    from .homework.data import load_data

    data = load_data()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(30, 15),
        torch.nn.ReLU(),
        torch.nn.Linear(15, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 1),
    )
    x = torch.as_tensor(data.x_train)
    y = torch.as_tensor(data.y_train)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(epochs):
        for a in range(0, len(y), 10):  # batches of 10, the last one of 5
            b = a + 10
            opt.zero_grad()
            loss = ((y[a:b] - model(x[a:b])) ** 2 / 2).mean()
            loss.backward()
            opt.step()
    desc = f"homework MLP [30, 15, 8, 1] ReLU, {epochs} epochs of plaintext SGD (seed {seed})"
    return model.eval(), (data.x_train,), desc


def tiny_gpt2(*, seed: int = 0, tokens: int = 16) -> tuple[Any, tuple[np.ndarray], str]:
    """A seeded HF GPT-2 (2 layers, width 64, 2 heads, vocabulary 256) and random token ids."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if not 1 <= tokens <= 64:
        raise SampleError(f"--tokens must be in 1..64 (the tiny GPT-2's context), got {tokens}")
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=64)
    model = GPT2LMHeadModel(config).eval()
    model.config.use_cache = False  # logits only
    ids = np.random.default_rng(seed).integers(0, 256, size=(1, tokens), dtype=np.int64)
    desc = f"tiny GPT-2 (HF GPT2LMHeadModel, 2 layers, width 64, vocab 256, seed {seed})"
    return model, (ids,), desc


def sample_inputs(
    specs: Sequence[Any],
    files: Sequence[str | Path] = (),
    *,
    seed: int = 0,
    int_high: int | None = None,
) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """Positional and keyword sample inputs for ``specs`` (``torch_to_stablehlo.InputSpec``).

    ``files``: one ``.npy`` per spec, in order (its dtype and shape must match the spec);
    without them, floats are standard normal and integers uniform in ``[0, int_high)``
    (``int_high`` is then required for integer inputs: e.g. the vocabulary size).
    """
    if files and len(files) != len(specs):
        raise SampleError(
            f"{len(files)} --sample file(s) for {len(specs)} --input spec(s); give one per input"
        )
    rng = np.random.default_rng(seed)
    args: list[np.ndarray] = []
    kwargs: dict[str, np.ndarray] = {}
    for i, spec in enumerate(specs):
        label = spec.name or f"input {i}"
        integer = spec.dtype.startswith(("int", "uint")) or spec.dtype == "bool"
        if files:
            a = _load_npy(Path(files[i]))
            if tuple(a.shape) != tuple(spec.shape) or a.dtype.name != spec.dtype:
                raise SampleError(
                    f"{files[i]}: holds {a.dtype.name}{list(a.shape)}, but {label} is "
                    f"{spec.dtype}{list(spec.shape)}; fix the file or the --input spec"
                )
        elif integer:
            if int_high is None or int_high < 1:
                raise SampleError(
                    f"{label} is {spec.dtype}: give --int-high N (random ids in [0, N), e.g. the "
                    "vocabulary size) or --sample files"
                )
            a = rng.integers(0, int_high, size=spec.shape).astype(spec.dtype)
        else:
            a = rng.standard_normal(spec.shape).astype(spec.dtype)
        if spec.name is None:
            if kwargs:
                raise SampleError(f"positional {label} after keyword inputs; list those first")
            args.append(a)
        else:
            if spec.name in kwargs:
                raise SampleError(f"input {spec.name!r} is given twice; give each once")
            kwargs[spec.name] = a
    return tuple(args), kwargs


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(f"{path}: no such file; pass a .npy written by numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for a bad file
        raise InputFileError(
            f"{path}: not a readable .npy ({type(e).__name__}); write it with numpy.save"
        ) from None
