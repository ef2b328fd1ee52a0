"""The torch optimizer through one ``fit``: mapped for the fit's steps (its LR scheduler
too), the state it starts from, and the trained state written back (:class:`FitOptimizer`).

The mapping is :mod:`.optim`, the state carried in and out :mod:`.carry`, the schedules
:mod:`.schedules`; this module strings them together for ``fit`` (``loop.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .carry import TorchStart, extract, write_back
from .optim_base import OptimizerMappingError

__all__ = ["FitOptimizer", "owner_facts"]


@dataclasses.dataclass
class FitOptimizer:
    """The torch optimizer (and LR scheduler) of one ``fit``: mapped, its state carried in,
    and written back at the end.

    Attributes:
      topt: the mapping (:class:`~ppml_torch.train.optim.TorchOptimizer`) at the session's
        fixed point.
      optimizer, module, scheduler: the user's objects.
      schedule: the scheduler's per-step values (:mod:`ppml_torch.train.schedules`) or None.
      steps: the steps of this fit.
    """

    topt: Any
    optimizer: Any
    module: Any
    scheduler: Any = None
    schedule: Any = None
    steps: int | None = None

    @classmethod
    def of(
        cls,
        optimizer: Any,
        module: Any,
        scheduler: Any,
        step_every: str,
        *,
        fixed_point: tuple[str, int] | None,
        steps_per_epoch: int,
        epochs: int,
        owner_facts: Callable[[Any], Any] | None = None,
    ) -> FitOptimizer:
        """Map ``optimizer`` for a fit of ``epochs`` epochs of ``steps_per_epoch`` steps.

        ``owner_facts(facts) -> facts``: one process per party, the weights' owner's public
        facts (per-group step counts, the schedule) replace this process's own: only the
        owner's process holds the optimizer's state, and every process must build the same
        programs.
        """
        from .optim import from_torch
        from .schedules import schedule_of

        schedule = None
        if scheduler is not None:
            schedule = schedule_of(
                scheduler, optimizer, step_every=step_every,
                steps_per_epoch=steps_per_epoch, epochs=epochs,
            )  # fmt: skip
        n = epochs * steps_per_epoch
        topt = from_torch(
            optimizer, module, None, fixed_point=fixed_point, schedule=schedule, steps=n
        )
        if owner_facts is not None:
            steps, schedule_owner = owner_facts((topt.start.steps, schedule))
            if steps != topt.start.steps or schedule_owner is not schedule:
                schedule = schedule_owner
                start = TorchStart(tuple(steps), topt.start.tensors)
                topt = from_torch(
                    optimizer, module, None, fixed_point=fixed_point, schedule=schedule,
                    start=start, steps=n,
                )  # fmt: skip
        return cls(topt, optimizer, module, scheduler, schedule, n)

    def at(self, fixed_point: tuple[str, int] | None) -> Any:
        """The mapping at another fixed point (the range check tries other settings)."""
        from .optim import from_torch

        return from_torch(
            self.optimizer, self.module, None, fixed_point=fixed_point,
            schedule=self.schedule, start=self.topt.start, steps=self.steps,
        )  # fmt: skip

    def initial(self, topt: Any, model: Any, names: Any, trainable: Mapping[str, Any]) -> Any:
        """The optax state to start from, in plaintext (the torch optimizer's own, moved into
        the converted model's layout, or a fresh one)."""
        if topt.start.fresh:
            return topt.tx.init(dict(trainable))
        to_leaf, _ = self._layouts(model, names)
        return topt.init(dict(trainable), to_leaf)

    def finish(
        self,
        model: Any,
        names: Any,
        trainable: Mapping[str, Any],
        secret: tuple[bool, ...],
        values: Sequence[Any] | None,
        n_steps: int,
    ) -> None:
        """After the training: the revealed secret leaves ``values`` (``None``: this process
        did not receive them) written into the torch optimizer, and the scheduler stepped
        as the torch loop would have (in every process: it is public)."""
        from .schedules import advance
        from .state import with_secret_leaves

        if values is not None and any(secret):
            template = self.topt.tx.init(dict(trainable))
            state = with_secret_leaves(template, secret, [np.asarray(v) for v in values])
            _, to_torch = self._layouts(model, names)
            moved = extract(self.topt, state, dict(trainable), self.topt.start, to_torch, n_steps)
            write_back(self.optimizer, self.module, moved)
        if self.scheduler is not None:
            advance(self.scheduler, self.schedule.scheduler_steps)

    def _layouts(self, model: Any, names: Any) -> tuple[Any, Any]:
        from .names import layouts

        wanted = list(self.topt.paths)
        try:
            return layouts(model, names, wanted)
        except ValueError as e:
            raise OptimizerMappingError(
                f"the optimizer's state cannot be carried on the {model.route} route: {e}"
            ) from None


def owner_facts(sp: Any, owner: str) -> Callable[[Any], Any] | None:
    """One process per party: the weights' owner's public optimizer facts for everyone."""
    if not sp.one_process_per_party:
        return None
    session = sp.session

    def facts(mine: Any) -> Any:
        return session.announce(lambda p: mine if p == owner else None)[owner]

    return facts
