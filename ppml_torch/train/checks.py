"""The argument checks of ``fit`` and ``predict``: one line each (:class:`FitError`), before
any session work.

The data description is checked by :func:`ppml_torch.train.data.load`, the optimizer and the
loss by their mappings (:mod:`~ppml_torch.train.optim`, :mod:`~ppml_torch.train.losses`);
what is left is here: the route, the counts, the session, the optimizer's parameters, who
sees the loss, and the shapes the model, the labels and the loss agree on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ppml_torch.errors import PpmlError
from ppml_torch.model import ROUTES
from ppml_torch.runners.base import Session
from ppml_torch.runners.plan import SessionPlan, session_plan

from .data import Data, Loaded


class FitError(PpmlError, ValueError):
    """A bad argument of ``fit``/``predict`` (found before any MPC work)."""


def check_route(route: str) -> None:
    if route not in ROUTES:
        raise FitError(f"route must be 'graph' or 'flax', got {route!r}")


def check_counts(epochs: Any, batch_size: Any, seed: Any = 0) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise FitError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FitError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FitError(f"seed must be a non-negative int, got {seed!r}")


def plan_session(session: Session | str) -> SessionPlan:
    """The session of a ``fit``/``predict``: an open session (borrowed) or a run spec."""
    return session_plan(
        session,
        error=FitError,
        torch_error="session 'torch' is torch eager: train with torch itself, or use cpu, spu "
        "or secretflow",
    )


def check_module_params(optimizer: Any, module: Any) -> None:
    owned = {id(p) for p in module.parameters()}
    for i, g in enumerate(getattr(optimizer, "param_groups", [])):
        for j, p in enumerate(g["params"]):
            if id(p) not in owned:
                raise FitError(
                    f"optimizer param group {i}, parameter {j} (shape {tuple(p.shape)}) is not a "
                    f"parameter of this {type(module).__name__}; build the optimizer on "
                    "module.parameters()"
                )


def check_batch_size(batch_size: int, n_rows: int) -> None:
    if batch_size > n_rows:
        raise FitError(
            f"batch_size {batch_size} is larger than the data ({n_rows} rows); use at most {n_rows}"
        )


def loss_receiver(reveal_loss: bool | str, data: Data, parties: Sequence[str]) -> str | None | bool:
    """``False`` (not revealed), ``None`` (every party) or a party name."""
    if reveal_loss is False or reveal_loss is None:
        return False
    if isinstance(reveal_loss, str):
        if reveal_loss not in parties:
            raise FitError(
                f"reveal_loss={reveal_loss!r} is not a party of the session ({', '.join(parties)})"
            )
        return reveal_loss
    if reveal_loss is True:
        owners = set(data.label_owners)
        return owners.pop() if len(owners) == 1 else None
    raise FitError(f"reveal_loss must be True, False or a party name, got {reveal_loss!r}")


def check_trained_names(trainable: Sequence[str], names: Sequence[str], route: str) -> None:
    """Every parameter the optimizer trains is a leaf of the converted model."""
    missing = [t for t in trainable if t not in names]
    if missing:
        raise FitError(
            f"parameters {missing[:4]} are trained by the optimizer but the {route} route's "
            "weights do not include them"
        )


def check_loss_shapes(
    model: Any,
    loss: Any,
    params: Any,
    loaded: Loaded,
    batch_size: int,
    row: tuple[int, ...],
    dtype: Any,
) -> None:
    """Trace the model and the loss on shapes only: a mismatch is one line, before any MPC."""
    import jax

    y = loaded.labels[0]
    xb = jax.ShapeDtypeStruct((batch_size, *row), dtype)
    yb = jax.ShapeDtypeStruct((batch_size, *y.shape[1:]), y.dtype)
    out = jax.eval_shape(model.apply, params, xb)
    if getattr(out, "shape", None) is None:
        raise FitError("the module's output is not one tensor; fit trains single-output modules")
    class_labels = np.issubdtype(y.dtype, np.integer) and out.shape[:-1] == yb.shape
    if out.shape != yb.shape and not class_labels:  # no silent broadcasting (n, 1) vs (n,)
        raise FitError(
            f"the module's output has shape {out.shape} per batch but the labels {yb.shape}; "
            "give labels of the output's shape (e.g. y.reshape(-1, 1))"
        )
    try:
        value = jax.eval_shape(loss, out, yb)
    except Exception as e:  # noqa: BLE001 - re-raised as one line
        raise FitError(
            f"the loss cannot take outputs {out.shape} and labels {yb.shape}: {e}"
        ) from None
    if getattr(value, "shape", None) != ():
        raise FitError(
            f"the loss returns shape {getattr(value, 'shape', type(value).__name__)}, not a scalar; "
            "fit differentiates one number: use reduction='mean' or 'sum'"
        )


# fit's range_check values (the check itself: preflight.py)
RANGE_CHECKS = ("auto", "bounds", "off")


def check_fit_options(
    log_every: Any, range_check: Any, sentinel: Any, mpc: bool, receiver: Any
) -> None:
    """``log_every`` (a per-step loss is a disclosure under MPC: opt in with ``reveal_loss``),
    ``range_check`` and ``sentinel``."""
    if log_every is not None and (
        isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1
    ):
        raise FitError(
            f"log_every must be a positive int (every n-th step's loss) or None, got {log_every!r}"
        )
    if log_every and mpc and receiver is False:
        raise FitError(
            f"log_every={log_every} under MPC reveals the loss of one step in {log_every} (a value "
            "of every party's data): opt in with reveal_loss=True (to the label owner) or a party "
            "name"
        )
    if range_check is not False and range_check not in RANGE_CHECKS:
        raise FitError(
            f"range_check must be one of {', '.join(map(repr, RANGE_CHECKS))} or False, got {range_check!r}"
        )
    from .sentinel import SENTINELS

    if not isinstance(sentinel, bool) and sentinel not in SENTINELS:
        raise FitError(
            f"sentinel must be True (the default), False, 'steps' or 'epoch', got {sentinel!r}"
        )
