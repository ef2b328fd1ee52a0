"""``fit(..., profile=True)``: the MPC cost of one training step, per module, in ``History``.

Before the first epoch, the step program on the first batch (rows ``0..batch_size`` in data
order, the batch epoch 1 starts with when ``shuffle=False``) is run through
:func:`ppml_torch.profiling.profile_call`: once whole, then cut into per-module parts, on the
state and blocks already in the session.  The model's ``apply`` is marked as the model, the
loss and the optimizer's update as the rows ``(loss)`` and ``(optimizer)``, assembling the
batch from the parties' blocks as ``(inputs)``; the backward pass is its own column.  The
step's output (a trained state, the loss) stays secret and is freed: the training itself
starts from the untouched initial state, so a profiled fit trains exactly as one without.
The profile's runs are session work (more bytes and time), listed in ``history.reports``.

Only an in-process ``spu`` session has per-module costs to count (SPU's log of every party in
one process): a plaintext session has no shares or messages, and ``secretflow`` runs the
same SPU programs in other processes; both are refused in one line before any work.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .checks import FitError
from .programs import TrainPlan

__all__ = ["check_profile", "profile_first_step"]


def check_profile(profile: Any, backend: str) -> bool:
    """``profile`` is True or False; True needs an in-process ``spu`` session."""
    if not isinstance(profile, bool):
        raise FitError(f"profile must be True or False, got {profile!r}")
    if profile and backend != "spu":
        what = "a plaintext session has no MPC cost" if backend == "cpu" else (
            f"{backend} runs SPU in other processes, whose costs one process cannot read"
        )  # fmt: skip
        raise FitError(
            f"profile=True measures one step's MPC cost per module and {what}; profile with an "
            "in-process session such as session='spu:SEMI2K' (same programs, same costs)"
        )
    return profile


def scoped(plan: TrainPlan) -> TrainPlan:
    """The same plan with the profile's marks (metadata only: the same arithmetic)."""
    import optax

    from ppml_torch.profiling.scopes import model_scope, part_scope

    def mark_model(apply: Any) -> Any:
        if apply is None:
            return None

        def marked(params: Any, x: Any) -> Any:
            with model_scope():
                return apply(params, x)

        return marked

    def loss(out: Any, y: Any) -> Any:
        with part_scope("loss"):
            return plan.loss(out, y)

    def update(grads: Any, state: Any, params: Any = None) -> Any:
        with part_scope("optimizer"):
            return plan.tx.update(grads, state, params)

    tx = optax.GradientTransformation(plan.tx.init, update)
    return dataclasses.replace(
        plan, apply=mark_model(plan.apply), apply_partial=mark_model(plan.apply_partial),
        loss=loss, tx=tx,
    )  # fmt: skip


def profile_first_step(
    session: Any, plan: TrainPlan, state: Any, blocks: list[Any], source: str, route: str
) -> Any:
    """The :class:`~ppml_torch.profiling.report.ProfileReport` of one ``train_step`` on the
    first batch; its output handle is freed (nothing revealed)."""
    from ppml_torch.profiling.run import profile_call
    from ppml_torch.profiling.scopes import part_scope

    marked = scoped(plan)
    b, inputs = plan.batches, plan.inputs
    n_data = inputs.n_feature_blocks + inputs.n_label_blocks

    def train_step(state: Any, *blocks: Any) -> Any:
        with part_scope("inputs"):
            x, y = inputs.assemble(blocks[:n_data])
            rows = b.batch_size if b.n_full else b.partial
            xb, yb = x[:rows], y[:rows]
        apply = None if b.n_full else marked.apply_partial
        return marked.train_step(state, xb, yb, apply=apply)

    out, report = profile_call(
        session, train_step, state, *blocks[:n_data], name="profile step",
        source=source, route=route, root_kind=source, grads=True, weights=None,
    )  # fmt: skip
    session.free(out)
    return report
