"""The homework's training: AUC under MPC within 0.01 of plaintext, with the fixed loss."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from ppml_torch.apps.homework import train
from ppml_torch.apps.homework.data import load_data
from ppml_torch.apps.homework.evaluate import auc, predict_test
from tests.sessions import get_session


@pytest.fixture(scope="module")
def setup():
    data = load_data()
    apply_fn, params = train.init_flax_mlp()
    return data, apply_fn, params


def _auc(backend, protocol, field, setup, epochs=10):
    data, apply_fn, params = setup
    s = get_session(backend, protocol, field)
    result = train.fit(s, apply_fn, params, data, epochs=epochs)
    scores = predict_test(s, apply_fn, result.params, data)
    s.free(result.params)
    return auc(scores, data), result.report


@pytest.fixture(scope="module")
def cpu_auc(setup):
    return _auc("cpu", None, None, setup)[0]


def test_loss_refuses_the_broadcasting_bug(setup):
    _, apply_fn, params = setup
    x = jnp.ones((4, 30))
    with pytest.raises(ValueError, match=r"predictions \(4, 1\) and labels \(4,\)"):
        train.mse_loss(apply_fn, params, x, jnp.ones((4,)))


def test_batches_follow_array_split():
    spans = train.batches(455, 10)
    assert len(spans) == 45 and spans[0] == (0, 11) and spans[-1] == (445, 455)


def test_cpu_training_learns(cpu_auc):
    assert cpu_auc > 0.9


@pytest.mark.parametrize(
    "backend,protocol,field",
    [
        ("spu", "SEMI2K", "FM64"),
        ("spu", "ABY3", "FM64"),
        pytest.param("secretflow", "SEMI2K", "FM64", marks=pytest.mark.secretflow),
    ],
)
def test_auc_under_mpc_matches_cpu(backend, protocol, field, setup, cpu_auc):
    auc, report = _auc(backend, protocol, field, setup)
    print(f"\n{backend} {protocol}: AUC {auc:.5f} vs cpu {cpu_auc:.5f}; {report.describe()}")
    assert abs(auc - cpu_auc) <= 0.01
    assert report.comm.send_bytes > 0


def test_cheetah_one_epoch_matches_cpu(setup):
    """CHEETAH is slow here (~18 s an epoch): one epoch, compared with one plaintext epoch."""
    cpu = _auc("cpu", None, None, setup, epochs=1)[0]
    cheetah = _auc("spu", "CHEETAH", "FM64", setup, epochs=1)[0]
    assert abs(cheetah - cpu) <= 0.01


def test_reveal_params_gives_the_trained_weights_to_their_owner(setup):
    """``fit`` + ``reveal_params``: the revealed weights match plaintext training."""
    from ppml_torch.testing import Tolerance, assert_close

    data, apply_fn, params = setup

    def trained(s):
        result = train.fit(s, apply_fn, params, data, epochs=1, params_owner="bob")
        assert result.owner == "bob"
        return train.reveal_params(s, result)

    mpc = trained(get_session("spu", "SEMI2K", "FM64"))
    ref = trained(get_session("cpu"))
    err = assert_close(mpc, ref, tol=Tolerance(atol=5e-3, rtol=0.0))
    print(f"\nweights after 1 epoch, SEMI2K vs cpu: max abs error {err:.2e}")
