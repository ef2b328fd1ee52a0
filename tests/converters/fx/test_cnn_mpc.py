"""The CNN lowerings under SPU (SEMI2K and ABY3, FM64): outputs and parameter gradients within
the derived tolerance (``check_equivalence``: fixed-point base plus the measured errors of the
approximated ops), one small module per lowering; the largest errors are printed per row
(``-s``) and kept in ``tests.sessions.largest_errors``.  Max pooling's indices are compared
exactly (a wrong index is a wrong number, whatever the tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from ppml_torch.converters.fx import convert
from ppml_torch.equivalence import check_equivalence
from ppml_torch.equivalence.sessions import session_for
from ppml_torch.runners import wrap
from tests.sessions import get_session, record_error


def _bn_stats(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
    return m


def _modules() -> dict[str, tuple]:
    torch.manual_seed(0)
    return {
        "conv-stride-pad": (nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 9)),
        "conv-dilated-1d": (nn.Conv1d(3, 4, 3, dilation=2, padding=2), (2, 3, 12)),
        "conv-depthwise": (nn.Conv2d(4, 8, 3, padding=1, groups=4), (2, 4, 7, 7)),
        "conv-transposed": (nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1), (2, 4, 5, 5)),
        "maxpool-stem": (nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(3, 2, 1)), (2, 3, 9, 9)),
        "avgpool-ceil": (
            nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, 1, True, False)),
            (2, 3, 8, 8),
        ),
        "adaptive-avg-uneven": (
            nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d((3, 2))),
            (2, 3, 7, 5),
        ),
        "adaptive-max": (
            nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveMaxPool2d((2, 3))),
            (2, 3, 7, 7),
        ),
        "batch-norm-eval": (
            _bn_stats(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))),
            (2, 3, 6, 6),
        ),
        "group-norm": (nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4)), (2, 3, 6, 6)),
        "instance-norm": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, affine=True)),
            (2, 3, 6, 6),
        ),
        "upsample-nearest": (
            nn.Sequential(nn.Conv2d(3, 2, 1), nn.Upsample(scale_factor=2)),
            (1, 3, 4, 5),
        ),
        "upsample-bilinear": (
            nn.Sequential(nn.Conv2d(3, 2, 1), nn.Upsample(size=(7, 9), mode="bilinear")),
            (1, 3, 4, 5),
        ),
    }


MODULES = _modules()


@pytest.mark.parametrize("protocol", ["SEMI2K", "ABY3"])
@pytest.mark.parametrize("name", list(MODULES))
def test_cnn_lowering_under_mpc(name, protocol):
    module, shape = MODULES[name]
    module.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    report = check_equivalence(
        module, (x,), runs=[f"spu:{protocol}"], routes=["graph"], grads=True, sessions=session_for
    )
    row = report.row("graph", f"spu:{protocol}:FM64")
    print(f"{name} {protocol}: out err {row.out_err:.2e} (tol {row.tol.atol:.1e}), grad err "
          f"{row.grad_err:.2e} (tol {row.grad_tol.atol:.1e})")  # fmt: skip
    record_error(f"{protocol}/FM64 cnn {name}", max(row.out_err, row.grad_err))
    assert row.status == "pass", str(report)


@pytest.mark.parametrize("protocol", ["SEMI2K", "ABY3"])
def test_max_pool_indices_are_torchs_under_mpc(protocol):
    """Indices are exact: ties (ReLU zeros) go to the first position as in torch."""
    x = torch.relu(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)) - 0.3)
    module = nn.MaxPool2d(3, 2, 1, return_indices=True)
    cm = convert(module, (x,))  # no weights: the images are bob's
    run = wrap(get_session("spu", protocol, "FM64"), lambda a: cm.apply({}, a), owners=("bob",))
    out, idx = run(x.numpy())
    t_out, t_idx = module(x)
    np.testing.assert_array_equal(np.asarray(idx), t_idx.numpy())
    assert float(np.max(np.abs(np.asarray(out) - t_out.numpy()))) < 1e-4


@pytest.mark.parametrize("protocol", ["SEMI2K", "ABY3"])
def test_batch_norm_training_statistics_under_mpc(protocol):
    """Batch statistics and the returned running statistics under MPC, against torch."""
    torch.manual_seed(0)
    net = _bn_stats(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).train()
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    cm = convert(net, (x,), buffer_updates="return")
    out, updates = wrap(get_session("spu", protocol, "FM64"), cm.apply, owners=("alice", "bob"))(
        cm.params, x.numpy()
    )
    expected = net(x).detach().numpy()  # updates the torch buffers
    err = float(np.max(np.abs(np.asarray(out) - expected)))
    stats = max(
        float(np.max(np.abs(np.asarray(updates[k]) - net.state_dict()[k].numpy())))
        for k in ("1.running_mean", "1.running_var")
    )
    print(f"batch norm training {protocol}: out err {err:.2e}, running stats err {stats:.2e}")
    record_error(f"{protocol}/FM64 cnn batch-norm-train", max(err, stats))
    assert err < 5e-3 and stats < 1e-3
