"""Torch LR schedulers in ``fit``: the learning rates (and cycled momenta) of every step.

``fit(..., scheduler=sched, scheduler_step="epoch" | "batch")`` trains as a torch loop that
calls ``sched.step()`` after every epoch or after every batch.  The scheduler is read, not
reimplemented: a copy of it, bound to a copy of the optimizer's param groups (no tensors), is
stepped in plaintext for the steps of this fit, and each param group's learning rate (and
the momentum or ``beta1`` a scheduler such as ``OneCycleLR`` cycles) at every step becomes a
public table, an optax schedule indexed by the step (:func:`ppml_torch.train.transforms.
scale_by_table`).  The numbers are torch's own, in torch's order of operations.

After the fit the user's scheduler is stepped as the torch loop would have stepped it (once
per epoch or per batch), so its state and the optimizer's learning rates carry on: two fits
of 2 and 3 epochs are one fit of 5.

Mapped: ``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``CosineAnnealingLR``, ``LinearLR``,
``OneCycleLR``.  Others are refused in one line (``ReduceLROnPlateau`` reads a metric that is
secret under MPC; ``LambdaLR`` and the composite schedulers run user code or other
schedulers this module does not check).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .optim_base import OptimizerMappingError

__all__ = ["SCHEDULERS", "STEP_EVERY", "Schedule", "advance", "check_scheduler", "schedule_of"]

SCHEDULERS = (
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearLR",
    "OneCycleLR",
)
STEP_EVERY = ("epoch", "batch")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Per param group, the hyper-parameters of every step of one fit.

    Attributes:
      kind: the scheduler's class name.
      step_every: ``"epoch"`` or ``"batch"``: when the torch loop calls ``scheduler.step()``.
      lr: per group, the learning rate of each step, ``(steps,)``.
      momentum: per group, the momentum (SGD) or ``beta1`` (Adam) of each step when the
        scheduler cycles it (``OneCycleLR(cycle_momentum=True)``), else ``None``.
      scheduler_steps: how many times this fit steps the torch scheduler.
    """

    kind: str
    step_every: str
    lr: tuple[np.ndarray, ...]
    momentum: tuple[np.ndarray | None, ...]
    scheduler_steps: int


def _attached_lr_scheduler(optimizer: Any) -> bool:
    return any("initial_lr" in g for g in getattr(optimizer, "param_groups", []))


def check_scheduler(scheduler: Any, optimizer: Any, step_every: Any) -> None:
    """One line (:class:`OptimizerMappingError`) for a scheduler ``fit`` cannot follow."""
    import torch

    if scheduler is None:
        if _attached_lr_scheduler(optimizer):
            raise OptimizerMappingError(
                "the optimizer has an LR scheduler attached (its param groups carry "
                "'initial_lr'); pass it, fit(..., scheduler=sched, scheduler_step='epoch' or "
                "'batch'), so that its learning rates are used and its state carried"
            )
        return
    if step_every not in STEP_EVERY:
        raise OptimizerMappingError(
            f"scheduler_step must be 'epoch' or 'batch' (when your torch loop calls "
            f"scheduler.step()), got {step_every!r}"
        )
    if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        raise OptimizerMappingError(
            f"scheduler must be a torch.optim.lr_scheduler scheduler, got "
            f"{type(scheduler).__name__}"
        )
    kind = type(scheduler).__name__
    if (
        type(scheduler) is not getattr(torch.optim.lr_scheduler, kind, None)
        or kind not in SCHEDULERS
    ):
        raise OptimizerMappingError(
            f"scheduler {type(scheduler).__module__}.{type(scheduler).__qualname__} has no "
            f"mapping; use one of {', '.join(SCHEDULERS)}"
        )
    if scheduler.optimizer is not optimizer:
        raise OptimizerMappingError(
            f"the {kind} is attached to another optimizer ({type(scheduler.optimizer).__name__} "
            f"at {id(scheduler.optimizer):#x}), not to the one passed to fit; build it on that "
            "optimizer"
        )


def _shadow(scheduler: Any, optimizer: Any) -> tuple[Any, Any]:
    """A copy of ``scheduler`` on a copy of the optimizer's param groups (hyper-parameters
    only: the scheduler reads and writes ``lr``, ``momentum``, ``betas`` there)."""
    groups = [
        {k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups
    ]

    def step() -> None:  # looks like an optimizer.step() the scheduler already wrapped
        pass

    step._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    opt = types.SimpleNamespace(
        param_groups=groups, defaults=dict(optimizer.defaults), step=step, _opt_called=True
    )
    shadow = object.__new__(type(scheduler))
    shadow.__dict__.update(copy.deepcopy(scheduler.state_dict()))
    shadow.optimizer = opt
    return shadow, opt


def _momentum_key(group: dict[str, Any]) -> str | None:
    return "betas" if "betas" in group else "momentum" if "momentum" in group else None


def schedule_of(
    scheduler: Any,
    optimizer: Any,
    *,
    step_every: str,
    steps_per_epoch: int,
    epochs: int,
) -> Schedule:
    """The :class:`Schedule` of ``epochs`` epochs of ``steps_per_epoch`` steps.

    A scheduler that cannot take that many steps (``OneCycleLR`` past ``total_steps``) is
    refused in one line, as torch would raise in the middle of training.
    """
    kind = type(scheduler).__name__
    shadow, opt = _shadow(scheduler, optimizer)
    n_steps = epochs * steps_per_epoch
    scheduler_steps = n_steps if step_every == "batch" else epochs
    cycles = getattr(scheduler, "cycle_momentum", False)
    values: list[tuple[list[float], list[float | None]]] = []

    def read() -> tuple[list[float], list[float | None]]:
        lrs = [float(g["lr"]) for g in opt.param_groups]
        moms: list[float | None] = []
        for g in opt.param_groups:
            key = _momentum_key(g) if cycles else None
            moms.append(None if key is None else float(g[key][0] if key == "betas" else g[key]))
        return lrs, moms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values.append(read())
        for i in range(scheduler_steps):
            try:
                shadow.step()
            except ValueError as e:
                raise OptimizerMappingError(
                    f"the {kind} cannot take the {scheduler_steps} steps of this fit "
                    f"({epochs} epochs, stepped per {step_every}; it failed at step {i + 1}: "
                    f"{' '.join(str(e).split())}); give it more total_steps or fewer epochs"
                ) from None
            values.append(read())
    per_step = [
        values[t if step_every == "batch" else t // steps_per_epoch] for t in range(n_steps)
    ]
    n_groups = len(optimizer.param_groups)
    lr = tuple(np.array([v[0][g] for v in per_step], np.float64) for g in range(n_groups))
    momentum = tuple(
        None if per_step[0][1][g] is None else np.array([v[1][g] for v in per_step], np.float64)
        for g in range(n_groups)
    )
    return Schedule(kind, step_every, lr, momentum, scheduler_steps)


def advance(scheduler: Any, steps: int) -> None:
    """Step the user's scheduler ``steps`` times, as the torch loop would have (its state and
    the optimizer's learning rates carry on; torch's "step before optimizer.step()" warning is
    silenced: the optimizer did step, inside the session)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            scheduler.step()


def per_group(schedule: Schedule | None, n_groups: int) -> Sequence[dict[str, Any]]:
    """``[{"lr": table or None, "momentum": table or None}]`` per param group."""
    if schedule is None:
        return [{"lr": None, "momentum": None} for _ in range(n_groups)]
    return [{"lr": schedule.lr[g], "momentum": schedule.momentum[g]} for g in range(n_groups)]
