"""The homework through ``ppml_torch.fit``: AUC under MPC within 0.01 of torch eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppml_torch.apps.homework import train
from ppml_torch.apps.homework.data import load_data
from ppml_torch.apps.homework.evaluate import auc, torch_auc
from tests.sessions import get_session


@pytest.fixture(scope="module")
def data():
    return load_data()


@pytest.fixture(scope="module")
def eager(data):
    """torch eager after 10 epochs and after 1 (the same batches and initial weights)."""
    return {n: train.torch_eager(train.torch_mlp(), data, epochs=n)[0] for n in (1, 10)}


def _fit(backend, protocol, field, data, epochs=10):
    s = get_session(backend, protocol, field)
    module, history = train.train(s, data, epochs=epochs)
    return auc(train.predict_test(s, module, data), data), module, history


def _max_diff(a, b) -> float:
    return max(
        float((p - q).detach().abs().max())
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def test_torch_mlp_starts_from_the_homework_flax_weights():
    apply_fn, params = train.init_flax_mlp()
    x = np.random.default_rng(0).uniform(0, 1, (5, 30)).astype(np.float32)
    with torch.no_grad():
        got = train.torch_mlp()(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(apply_fn(params, x)), atol=1e-6)


def test_mse_at_half_the_rate_is_the_homework_loss(data):
    """``nn.MSELoss`` at lr 0.005 takes the steps of ``mean((y - p)**2 / 2)`` at 0.01."""
    ref = train.torch_mlp()
    opt = torch.optim.SGD(ref.parameters(), lr=0.01)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    for a in range(0, len(x), train.BATCH_SIZE):
        opt.zero_grad()
        torch.mean((y[a : a + 10] - ref(x[a : a + 10])) ** 2 / 2).backward()
        opt.step()
    mine, _ = train.torch_eager(train.torch_mlp(), data, epochs=1)
    assert _max_diff(mine, ref) < 1e-6


def test_cpu_fit_is_torch_eager(data, eager):
    got, module, history = _fit("cpu", None, None, data)
    assert history.batches_per_epoch == 45 and history.partial_batch == 5
    assert _max_diff(module, eager[10]) < 1e-5
    assert abs(got - torch_auc(eager[10], data)) < 1e-6
    assert got > 0.9  # it learns


@pytest.mark.parametrize(
    "backend,protocol,field",
    [
        ("spu", "SEMI2K", "FM64"),
        ("spu", "ABY3", "FM64"),
        pytest.param("secretflow", "SEMI2K", "FM64", marks=pytest.mark.secretflow),
    ],
)
def test_auc_under_mpc_matches_torch_eager(backend, protocol, field, data, eager):
    got, module, history = _fit(backend, protocol, field, data)
    ref = torch_auc(eager[10], data)
    err = _max_diff(module, eager[10])
    print(f"\n{backend} {protocol}: AUC {got:.5f} vs torch eager {ref:.5f}; max |dW| {err:.2e}")
    assert abs(got - ref) <= 0.01
    assert err < 5e-3
    comms = [e.comm for e in history.epochs]
    assert all(c is not None and c.send_bytes > 0 for c in comms)


def test_cheetah_one_epoch_matches_torch_eager(data, eager):
    """CHEETAH is slow here (~18 s an epoch): one epoch, compared with one torch eager epoch."""
    got, _, _ = _fit("spu", "CHEETAH", "FM64", data, epochs=1)
    assert abs(got - torch_auc(eager[1], data)) <= 0.01


def test_weights_are_revealed_once_to_alice(data):
    """The trained weights go to alice, once; the only other reveal is fit's overflow
    sentinel, one bit per epoch to bob, the label owner (docs/fit.md).  Catches the weights
    revealed to bob, twice, or anything else revealed."""
    s = get_session("spu", "SEMI2K", "FM64")
    first = len(s.record)
    train.train(s, data, epochs=2)
    reveals = [r for r in s.record[first:] if r.kind == "reveal"]

    def is_bit(r):
        (aval,) = r.handle.avals if len(r.handle.avals) == 1 else (None,)
        return aval is not None and aval.shape == () and str(aval.dtype) == "bool"

    assert [r.party for r in reveals if not is_bit(r)] == ["alice"]
    assert [r.party for r in reveals if is_bit(r)] == ["bob", "bob"]
