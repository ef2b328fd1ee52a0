"""ppml_torch/apps/digits/train.py: the digits CNN through ``ppml_torch.fit`` against the same
loop in torch eager (same initial weights, batches and steps).

cpu: the full 3 epochs, weights within float32 rounding of eager and the same test accuracy
(0.90).  MPC (spu:SEMI2K, slow): one epoch on the first 640 training images (the suite's
time), test accuracy within 0.02 of eager.
"""

from __future__ import annotations

import pytest

from ppml_torch.apps.digits import train
from ppml_torch.apps.digits.data import load_data
from tests.sessions import get_session, record_error

SPU_ROWS = 640  # 20 steps of 32: the suite's time (the full 3 epochs: bench/bench_digits.py)


@pytest.fixture(scope="module")
def data():
    return load_data()


def _max_diff(a, b) -> float:
    return max(
        float((p - q).detach().abs().max())
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def test_the_issue_s_model_and_eager_accuracy(data):
    """The architecture of issue 20 and torch eager's 0.90 after 3 epochs (catches another
    seed, learning rate or batch size in the eager reference)."""
    m = train.digits_cnn()
    assert [type(x).__name__ for x in m] == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"
    ]  # fmt: skip
    assert sum(p.numel() for p in m.parameters()) == 80 + 1168 + 650
    assert abs(train.accuracy(train.torch_eager(data), data) - 0.90) < 0.005


def test_cpu_fit_is_torch_eager(data):
    module, history = train.train(get_session("cpu"), data)
    assert history.batches_per_epoch == 44 and history.partial_batch == 29
    ref = train.torch_eager(data)
    assert _max_diff(module, ref) < 1e-5
    assert train.accuracy(module, data) == train.accuracy(ref, data)


@pytest.mark.slow
def test_spu_fit_accuracy_within_two_points_of_eager():
    data = load_data(SPU_ROWS)
    module, history = train.train(get_session("spu", "SEMI2K", "FM64"), data, epochs=1)
    ref = train.torch_eager(data, epochs=1)
    err = _max_diff(module, ref)
    got, want = train.accuracy(module, data), train.accuracy(ref, data)
    record_error("digits fit 20 steps SEMI2K:FM64 weights", err)
    print(f"\nSEMI2K: accuracy {got:.4f} vs eager {want:.4f}; max |dW| {err:.2e}")
    # SGD at lr 0.3 amplifies the fixed-point truncation far beyond one op's tolerance
    # (measured: 1.6e-2 after 45 steps, 4.7e-2 after 135): the issue's criterion is accuracy;
    # the bound on the weights only catches a run that went elsewhere
    assert err < 0.05
    assert abs(got - want) <= 0.02
