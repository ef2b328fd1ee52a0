"""What each epoch of ``fit`` reveals, and to whom: :class:`EpochOutputs`.

The epoch program returns the next state and, when asked, outputs (:meth:`TrainPlan.epoch
<ppml_torch.train.programs.TrainPlan.epoch>`): the sentinel's overflow bit, the mean loss,
every ``log_every``-th step's loss.  Each is picked by its own small program and revealed on
its own to its own receiver: the bit to the label owner, the losses to the loss's receiver
(a plaintext session: everyone, nothing is secret there).  A set bit stops ``fit`` with
:class:`TrainingOverflowError`, in every party's process.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppml_torch.runners.base import Handle, Session

from .cache import ConversionCache
from .checks import FitError
from .data import Data
from .history import EpochRecord, History, StepRecord
from .layout import Batches
from .programs import TrainPlan, first, output
from .progress import Stages
from .scope import Scope


class TrainingOverflowError(FitError):
    """The epoch program's sentinel saw a value that cannot happen in real numbers: a
    fixed-point overflow under MPC.  ``history`` holds the epochs run so far."""

    history: History | None = None


def overflow_to(data: Data) -> str | None:
    """Who learns the sentinel's bit: the label owner (horizontal: every party holds labels)."""
    owners = set(data.label_owners)
    return owners.pop() if len(owners) == 1 else None


def stop(s: Session, bit: Any, owner: str | None) -> bool:
    """The label owner's verdict, in every process: one process per party, the owner tells
    the others (whether the training goes on is visible to every party anyway)."""
    if owner is None or owner in s.local_parties and set(s.local_parties) >= set(s.parties):
        return bool(np.asarray(bit))
    mine = None if bit is None else bool(np.asarray(bit))
    return bool(s.announce(lambda p: mine if p == owner else None)[owner])


def overflow_message(e: int, plan: TrainPlan, sp: Any, owner: str | None) -> str:
    field, bits = sp.fixed_point
    return (
        f"epoch {e} overflowed under MPC ({field} with {bits} fraction bits): its sentinel saw "
        f"{plan.sentinel.describe()} (a fixed-point value wrapped); stopped: of that epoch only this bit was revealed (to {owner or 'every party'}), "
        "the weights and the optimizer keep their values from before the fit; scale the targets "
        "or features down, or use another field or fraction bits (the range check, "
        "range_check='auto', names the value when it sees it on the data it may use)"
    )


class EpochOutputs:
    """Reads each epoch's outputs, each revealed on its own to its own receiver: the
    sentinel's bit to the label owner, the mean loss and the steps' losses to the loss's
    receiver (plaintext: to everyone, nothing is secret); keeps the records."""

    def __init__(
        self,
        plan: TrainPlan,
        s: Session,
        scope: Scope,
        receiver: Any,
        data: Data,
        n_steps: int,
        first_report: int,
    ):
        self.plan, self.s, self.scope, self.n_steps, self.data = plan, s, scope, n_steps, data
        self.first_report = first_report
        self.to = {
            "loss": receiver or None,
            "steps": receiver or None,
            "overflow": overflow_to(data),
        }
        self.keys = [
            k
            for k, on in (
                ("overflow", plan.sentinel is not None),
                ("loss", plan.returns_loss),
                ("steps", bool(plan.log_every)),
            )
            if on
        ]
        self.pick = {k: output(k) for k in self.keys}  # one program each, compiled once
        self.records: list[EpochRecord] = []
        self.steps: list[StepRecord] = []
        self.overflow = False

    def read(self, e: int, out: Handle, report: Any) -> tuple[Handle, float | None]:
        """``(the next state, the epoch's loss if read)``."""
        s, scope = self.s, self.scope
        if not self.keys:
            self.records.append(EpochRecord(e, None, report.compile_s, report.run_s, report.comm))
            return out, None
        state = scope.call(first, out, name="state")
        got = {}
        for key in self.keys:  # the sentinel's bit first: when it is set, nothing else is
            h = scope.call(self.pick[key], out, name=f"epoch {key}")
            got[key] = s.reveal(h, to=self.to[key])  # None in another party's process
            scope.free(h)
            if key == "overflow":
                self.overflow = stop(s, got["overflow"], self.to["overflow"])
                if self.overflow:
                    break
        scope.free(out)
        value = None if got.get("loss") is None else float(got["loss"])
        if got.get("steps") is not None:
            for i, v in enumerate(np.asarray(got["steps"]).ravel()):
                step = (e - 1) * self.n_steps + (i + 1) * self.plan.log_every
                self.steps.append(StepRecord(e, step, float(v)))
        self.records.append(EpochRecord(e, value, report.compile_s, report.run_s, report.comm))
        return state, value

    def history(
        self, batches: Batches, refused: str | None, cache: ConversionCache, converted: int,
        stages: Stages,
    ) -> History:  # fmt: skip
        h = History(
            self.records, batches.n_full, batches.partial, batches.dropped,
            self.s.reports[self.first_report :], partial_padded=batches.padded,
            padding_refused=refused, conversions=cache.conversions - converted,
            setup_s=sum(stages.times.get(k, 0.0) for k in ("checks", "convert", "range check")),
            steps=self.steps, stages=dict(stages.times),
        )  # fmt: skip
        h.weights_to = self.data.weights_to
        return h
