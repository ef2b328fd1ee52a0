"""ppml_torch/train/programs.py: fit's own programs (``TrainPlan.init``, ``train_step``,
``epoch``, ``weights``) in plaintext, against the unpadded step and torch eager."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

from ppml_torch.train import losses
from ppml_torch.train.cache import conversions
from ppml_torch.train.layout import Batches, InputLayout
from ppml_torch.train.names import Leaves
from ppml_torch.train.optim import from_torch
from ppml_torch.train.programs import TrainPlan
from tests.train.toy import tiny_data, tiny_mlp, torch_eager

LR = 0.2


def plan_for(module, model, batches, *, apply_partial=None) -> TrainPlan:
    """The plan fit builds for SGD(lr=LR) on MSE, one feature block and one label block."""
    topt = from_torch(torch.optim.SGD(module.parameters(), lr=LR), module)
    trainable = {n for g in topt.groups for n in g["names"]}
    return TrainPlan(
        inputs=InputLayout("vertical", None, 1, 1),
        batches=batches,
        apply=model.apply,
        apply_partial=apply_partial,
        loss=losses.from_torch(nn.MSELoss()),
        tx=topt.tx,
        leaves=Leaves.of(model, trainable),
        returns_loss=True,
    )


def test_padded_partial_step_gradient_equals_unpadded():
    """fit's ``train_step`` on a partial batch of 3 rows padded to the batch shape of 8
    (``rows=3``: the 5 rows before it pad) gives the loss and the next weights of the same step
    on the 3 rows alone, run by their own conversion.

    Catches a broken padded partial batch in fit: with the loss taken over all 8 rows instead
    of the last ``rows`` (planted in ``train_step``), the losses differ by 0.073 and the next
    weights by 0.077, and this test fails (so does ``test_epoch_equals_torch_eager[True]``).
    """
    x, y = tiny_data(n=8)
    module = tiny_mlp()
    cache = conversions(module, "graph")
    full, part = cache.get([((8, 6), np.float32)]), cache.get([((3, 6), np.float32)])
    plan = plan_for(module, full, Batches.of(8, 8, drop_last=False, shuffle=False))
    state = plan.init(cache.params(full))
    padded, loss_padded = plan.train_step(state, x, y, rows=3)
    alone, loss_alone = plan.train_step(state, x[-3:], y[-3:], apply=part.apply)
    np.testing.assert_allclose(loss_padded, loss_alone, rtol=1e-6)
    moved = 0.0
    for k in state.trainable:
        np.testing.assert_allclose(padded.trainable[k], alone.trainable[k], atol=1e-7, err_msg=k)
        moved = max(moved, float(np.max(np.abs(padded.trainable[k] - state.trainable[k]))))
    assert moved > 1e-3  # the step did move the weights


@pytest.mark.parametrize("padded", [True, False])
def test_epoch_equals_torch_eager(padded):
    """One epoch of 20 rows in batches of 8 (two scanned batches, then the partial 4, padded or
    by its own conversion) equals torch's loop: weights and the mean loss.  Catches a wrong
    slice of the batches or of the partial batch in ``epoch`` (planted: the padded window
    ending at the last full batch instead of the partial one fails ``[True]``; the partial rows
    taken from the batch before fail ``[False]``)."""
    x, y = tiny_data(n=20)
    module = tiny_mlp()
    cache = conversions(module, "graph")
    model = cache.get([((8, 6), np.float32)])
    batches = dataclasses.replace(Batches.of(20, 8, drop_last=False, shuffle=False), padded=padded)
    part = None if padded else cache.get([((4, 6), np.float32)]).apply
    plan = plan_for(module, model, batches, apply_partial=part)
    state, out = plan.epoch(plan.init(cache.params(model)), x, y)
    loss = out["loss"]
    ref, ref_losses = torch_eager(tiny_mlp(), nn.MSELoss(), x, y, lr=LR, epochs=1, batch_size=8)
    trained = plan.weights(state)
    assert set(trained) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(trained[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(float(loss), ref_losses[0], rtol=1e-5)


def test_frozen_leaves_stay_in_the_state_and_are_not_revealed():
    """A parameter outside the optimizer is a fixed leaf: the model still reads it, the step
    never changes it, and ``weights`` (what fit reveals) leaves it out."""
    x, y = tiny_data(n=8)
    module = tiny_mlp()
    module[0].weight.requires_grad_(False)
    cache = conversions(module, "graph")
    model = cache.get([((8, 6), np.float32)])
    plan = plan_for(module, model, Batches.of(8, 8, drop_last=False, shuffle=False))
    state = plan.init(cache.params(model))
    assert set(state.fixed) == {"0.weight"} and "0.weight" not in state.trainable
    after, _ = plan.epoch(state, x, y)
    np.testing.assert_array_equal(after.fixed["0.weight"], state.fixed["0.weight"])
    assert set(plan.weights(after)) == {"0.bias", "2.weight", "2.bias"}
