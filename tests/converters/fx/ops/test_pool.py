"""pool lowerings vs torch: max (with indices), average, adaptive average and adaptive max
pooling, plus PyTorch's OpInfo samples of the pooling functions through ``convert``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
from fx_op_cases import case, primitives, randn, run
from opinfo_cases import check, samples

from ppml_torch.converters.fx import convert
from ppml_torch.models.pooling import tournament

aten = torch.ops.aten
mp, mp3 = aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default
ap, ap3 = aten.avg_pool2d.default, aten.avg_pool3d.default
aap, aap3 = aten._adaptive_avg_pool2d.default, aten._adaptive_avg_pool3d.default
amp, amp3 = aten.adaptive_max_pool2d.default, aten.adaptive_max_pool3d.default
x = randn(2, 3, 9, 8)
ties = torch.relu(randn(2, 3, 8, 8) - 0.5).round()  # many equal values: first-max rule
x3 = randn(1, 2, 5, 6, 7)
_OUT0 = (0,)  # indices are not differentiable

CASES = [
    case(mp, x, [2, 2], grad_outputs=_OUT0),
    case(mp, x, [3, 3], [2, 2], [1, 1], grad_outputs=_OUT0, label="stem-3x3-s2-p1"),
    case(mp, x, [3, 2], [2, 1], [1, 0], [2, 1], True, grad_outputs=_OUT0, label="dil-ceil"),
    case(mp, x, [3, 3], [3, 3], [0, 0], [1, 1], True, grad_outputs=_OUT0, label="ceil"),
    case(mp, ties, [2, 2], grad_outputs=_OUT0, label="ties"),
    case(mp, ties, [3, 3], [1, 1], [1, 1], grad_outputs=_OUT0, label="ties-overlap-pad"),
    case(mp, randn(3, 7, 7), [2, 2], grad_outputs=_OUT0, label="unbatched"),
    case(mp3, x3, [2, 3, 2], [2, 2, 2], [1, 1, 0], grad_outputs=_OUT0),
    case(ap, x, [2, 2]),
    case(ap, x, [3, 3], [2, 2], [1, 1], True, False, label="ceil-exclude-pad"),
    case(ap, x, [3, 2], [2, 2], [1, 1], True, True, label="ceil-include-pad"),
    case(ap, x, [3, 3], [2, 1], [1, 0], False, True, 5, label="divisor-override"),
    case(ap3, x3, [3, 2, 3], [2, 2, 2], [1, 0, 1], True, False),
    case(ap, x, [9, 8], [2, 3], [4, 4], True, False, label="large-window-by-matrices"),
    case(aap, x, [3, 4], label="divisible"),
    case(aap, x, [4, 3], label="uneven"),
    case(aap, x, [9, 5], label="identity-and-uneven"),
    case(aap, x, [7, 11], label="larger-than-input"),
    case(aap3, x3, [2, 4, 3]),
    case(amp, x, [4, 3], grad_outputs=_OUT0, label="uneven"),
    case(amp, x, [3, 4], grad_outputs=_OUT0, label="divisible"),
    case(amp, ties, [3, 5], grad_outputs=_OUT0, label="ties"),
    case(amp3, x3, [2, 3, 4], grad_outputs=_OUT0),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_pool(c):
    run(c)


_NAMES = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d"]
_NAMES += ["adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d"]
_NAMES += ["adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"]
_OPINFO = [s for name in _NAMES for s in samples(f"nn.functional.{name}", limit=4)]


@pytest.mark.parametrize("sid, info, sample", _OPINFO, ids=[s[0] for s in _OPINFO])
def test_opinfo_samples(sid, info, sample):
    check(info, sample)


def test_tournament_keeps_the_first_maximum_and_its_index():
    """Ties go to the earlier candidate and masked-out candidates never win, whatever their
    value: catches a `>=` comparison (the last maximum) and a fill value that wins."""
    values = jnp.asarray([[1.0, 5.0], [5.0, 9.0], [5.0, 2.0], [7.0, 9.0]])  # (K=4, 2 outputs)
    masks = np.array([[True, True], [True, False], [True, True], [True, True]])
    idx = np.broadcast_to(np.arange(4)[:, None], (4, 2))
    best, which = tournament(values, masks, idx)
    assert best.tolist() == [7.0, 9.0] and which.tolist() == [3, 3]
    best, which = tournament(values[:3], masks[:3], idx[:3])
    assert best.tolist() == [5.0, 5.0] and which.tolist() == [1, 0]


def test_max_pool_computes_indices_only_where_the_graph_reads_them():
    """Without return_indices the indices' selects are not in the program (each costs a
    secret multiplication per comparison under MPC); with them they are."""
    xb = torch.randn(1, 2, 6, 6)
    plain = convert(nn.MaxPool2d(2), (xb,))
    with_idx = convert(nn.MaxPool2d(2, return_indices=True), (xb,))
    n_plain = _selects(plain, xb)
    n_idx = _selects(with_idx, xb)
    assert n_idx == 2 * n_plain > 0
    out, idx = with_idx.apply(with_idx.params, xb.numpy())
    t_out, t_idx = nn.MaxPool2d(2, return_indices=True)(xb)
    assert np.array_equal(np.asarray(idx), t_idx.numpy())


def _selects(cm, xb):
    """select_n equations in ``cm.apply``, nested jaxprs (jnp's jitted helpers) included."""

    def count(jaxpr):
        n = 0
        for e in jaxpr.eqns:
            n += e.primitive.name == "select_n"
            for v in e.params.values():
                inner = getattr(v, "jaxpr", v)
                if hasattr(inner, "eqns"):
                    n += count(inner)
        return n

    return count(jax.make_jaxpr(lambda a: cm.apply(cm.params, a))(xb.numpy()).jaxpr)


def test_max_pool_gradient_reuses_the_forward_comparisons():
    """The backward pass of the tournament needs no new comparison: catches jnp.maximum
    (whose gradient compares again) in place of the select."""
    fn = lambda a: jnp.sum(tournament(a, None)[0] * 2.0)  # noqa: E731
    a = jnp.asarray(randn(9, 4, 5).numpy())
    fwd = jax.make_jaxpr(fn)(a)
    both = jax.make_jaxpr(jax.value_and_grad(fn))(a)
    count = lambda j: str(j).count(" gt ")  # noqa: E731
    assert count(both) == count(fwd) == 4  # ceil(log2 9) rounds
    assert "max" not in primitives(fn, a)
