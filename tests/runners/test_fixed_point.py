"""The fixed-point range stated in the README, and what SPU does outside it (measured here).

These tests pin SPU's behaviour the owner-side checks and the README rely on: inputs are
clamped at 2**(k-2-f), products are right below 2**(k-2-2f), and division by zero,
sqrt/log of negatives give numbers, not errors (which is why ppml-torch checks on the owner's
side).  If SPU changes any of this, the README's table and the checks must change with it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ppml_torch.runners import ConfigError
from ppml_torch.runners.config import fixed_point_product_limit, fixed_point_range
from tests.sessions import get_session


def test_range_per_field_and_fraction_bits():
    assert fixed_point_range("FM64", 18) == (2.0**44, 2.0**-18)  # 1.76e13, 3.8e-6
    assert fixed_point_range("FM128", 26) == (2.0**100, 2.0**-26)
    assert fixed_point_range("FM64", 10) == (2.0**52, 2.0**-10)
    assert fixed_point_product_limit("FM64", 18) == 2.0**26  # 6.7e7
    assert fixed_point_product_limit("FM128", 26) == 2.0**74
    for bad in (0, -5, 7, 27, 30, 31, 62, 2.5):
        with pytest.raises(ConfigError, match=r"does not fit FM64.*use an integer in 8\.\.26"):
            fixed_point_range("FM64", bad)
    with pytest.raises(ConfigError, match=r"unknown field 'FM32'"):
        fixed_point_range("FM32", 18)


def _spu_run(s, fn, *args):
    hs = [s.put(np.asarray(a, np.float32), owner="alice") for a in args]
    out = s.call(fn, *hs)
    value = s.reveal(out)
    for h in (*hs, out):
        s.free(h)
    return np.asarray(value)


@pytest.mark.parametrize("protocol", ["SEMI2K", "ABY3"])
def test_spu_fm64_range_and_edge_behaviour(protocol):
    s = get_session("spu", protocol, "FM64")
    limit, res = fixed_point_range("FM64", 18)
    # inputs just inside the limit survive (the owner-side check refuses anything above)
    x = np.float32([0.99 * limit, -0.99 * limit])
    np.testing.assert_allclose(_spu_run(s, lambda v: v, x), x, rtol=1e-6)
    # products: right below the product limit, wrong (no error!) at twice it
    p = fixed_point_product_limit("FM64", 18)
    a = np.float32([np.sqrt(0.5 * p), np.sqrt(4 * p)])
    got = _spu_run(s, lambda v: v * v, a)
    np.testing.assert_allclose(got[0], 0.5 * p, rtol=1e-4)
    assert abs(got[1] - 4 * p) > p, f"expected a wrong product beyond the limit, got {got[1]}"
    # the documented answers of undefined operations (numbers, not errors)
    np.testing.assert_array_equal(_spu_run(s, lambda v: 1.0 / v, np.float32([0.0])), [0.0])
    np.testing.assert_array_equal(_spu_run(s, jnp.sqrt, np.float32([-1.0, -4.0])), [0.0, 0.0])
    log = _spu_run(s, jnp.log, np.float32([-1.0, 0.0]))
    assert np.isfinite(log).all() and log[0] > 10 and log[1] < -15  # 10.8 and -15.5 measured
    # values below the resolution become 0
    np.testing.assert_array_equal(_spu_run(s, lambda v: v * 1.0, np.float32([0.4 * res])), [0.0])
