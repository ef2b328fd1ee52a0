"""The checks of generation's inputs, made before any conversion or sharing (one-line
:class:`~ppml_torch.generation.checkpoint.GenerationError`): prompt ids, lengths, candidate
tokens and the options ``route``, ``approx``, ``argmax``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ppml_torch.generation.checkpoint import GenerationError
from ppml_torch.generation.ops import ARGMAXES
from ppml_torch.model import ROUTES


def check_prompt(prompt_ids: Any, vocab_size: int) -> np.ndarray:
    """Prompt ids as int32 ``(B, T)``; one-line errors for empty, ragged, non-integer or
    out-of-vocabulary ids."""
    if hasattr(prompt_ids, "detach"):
        prompt_ids = prompt_ids.detach().cpu().numpy()
    try:
        arr = np.asarray(prompt_ids)
    except ValueError:
        raise GenerationError("prompt_ids are ragged; give every prompt the same length") from None
    if arr.size == 0:
        raise GenerationError("the prompt is empty; give at least one token id")
    if arr.dtype == object:
        raise GenerationError("prompt_ids are ragged; give every prompt the same length")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise GenerationError(f"prompt_ids must be integer token ids, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise GenerationError(f"prompt_ids must be (T,) or (B, T), got shape {arr.shape}")
    bad = arr[(arr < 0) | (arr >= vocab_size)]
    if bad.size:
        raise GenerationError(
            f"prompt token id {int(bad[0])} is outside the model's vocabulary 0..{vocab_size - 1}"
        )
    return arr.astype(np.int32)


def check_lengths(prompt_len: int, new: Any, positions: int, max_len: int | None) -> int:
    """The cache length needed (``T + N - 1``); errors when it exceeds the table or ``max_len``."""
    if isinstance(new, bool) or not isinstance(new, (int, np.integer)) or new < 1:
        raise GenerationError(f"max_new_tokens must be a positive integer, got {new!r}")
    need = prompt_len + int(new) - 1  # the last new token is never fed back
    if need > positions:
        raise GenerationError(
            f"a {prompt_len}-token prompt plus {new} new tokens needs {need} positions; the "
            f"model's position table has {positions}: shorten the prompt or ask fewer tokens"
        )
    if max_len is not None and need > max_len:
        raise GenerationError(
            f"a {prompt_len}-token prompt plus {new} new tokens needs {need} cache slots; "
            f"max_len is {max_len}"
        )
    return max_len if max_len is not None else need


def check_candidates(candidates: Any, vocab_size: int, argmax: str) -> np.ndarray | None:
    """Candidate token ids as a sorted int32 array (or None); one-line errors otherwise."""
    if candidates is None:
        return None
    arr = np.asarray(candidates)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise GenerationError("candidates must be a non-empty 1-D list of integer token ids")
    if arr.min() < 0 or arr.max() >= vocab_size:
        bad = int(arr[(arr < 0) | (arr >= vocab_size)][0])
        raise GenerationError(
            f"candidate token id {bad} is outside the model's vocabulary 0..{vocab_size - 1}"
        )
    if np.any(np.diff(arr) <= 0):
        raise GenerationError("candidates must be strictly increasing token ids (sort, dedupe)")
    if argmax != "tree":
        raise GenerationError(f"candidates need argmax='tree' (got argmax={argmax!r})")
    return arr.astype(np.int32)


def check_options(route: str, approx: Any, argmax: str) -> None:
    """``route`` one of :data:`~ppml_torch.model.ROUTES`, ``approx`` a bool, ``argmax`` one of
    :data:`~ppml_torch.generation.ops.ARGMAXES`."""
    if route not in ROUTES:
        raise GenerationError(f"route {route!r} is unknown; use {' or '.join(ROUTES)}")
    if not isinstance(approx, bool):
        raise GenerationError(f"approx must be True or False, got {approx!r}")
    if argmax not in ARGMAXES:
        raise GenerationError(f"argmax {argmax!r} is unknown; use {', '.join(ARGMAXES)}")
