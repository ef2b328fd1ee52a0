"""Measure where SPU's approximations of sqrt, rsqrt, log and division stop giving right numbers.

:data:`ppml_torch.runners.config.FUNCTION_RANGE_EXPONENTS` (the largest argument each takes
right, as a power of two relative to the fraction bits) comes from this script's output.
For each setting it runs each function under SPU (in-process simulator) on arguments
``2**(i/4)`` and prints the first argument whose result is off by more than 5% (relative,
with a floor of 64 resolution steps), as ``log2(argument) - fraction bits``.

    .venv/bin/python scripts/measure_function_ranges.py      # about 2 minutes
"""

from __future__ import annotations

import argparse

import numpy as np

SETTINGS = [
    ("SEMI2K", "FM64", 12),
    ("SEMI2K", "FM64", 18),
    ("SEMI2K", "FM64", 24),
    ("SEMI2K", "FM128", 26),
    ("SEMI2K", "FM128", 40),
    ("ABY3", "FM64", 18),
]


def functions():
    import jax
    import jax.numpy as jnp

    return {
        "sqrt": jnp.sqrt,
        "rsqrt": lambda x: jax.lax.rsqrt(x) * jnp.sqrt(x),  # rsqrt's error, scaled to ~1
        "log": jnp.log,
        "divisor": lambda x: (x * 0.5) / x,  # a secret divisor (the dividend x/2 must also
        # fit the product limit 2**(k-2-2f): FM64 f=24 fails there, at 2**14)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    from ppml_torch.runners import open_session, wrap
    from ppml_torch.runners.config import FUNCTION_RANGE_EXPONENTS, fixed_point_range

    print(
        "protocol field f  "
        + "  ".join(f"{n:>8}" for n in functions())
        + "   (first wrong argument: log2 - f)"
    )
    for protocol, field, f in SETTINGS:
        limit = fixed_point_range(field, f)[0]
        xs = np.array([2.0 ** (k / 4) for k in range(0, 4 * 90)])
        xs = xs[xs < limit / 4].astype(np.float32)
        cells = []
        with open_session("spu", protocol, field, runtime={"fxp_fraction_bits": f}) as s:
            for fn in functions().values():
                got = np.asarray(wrap(s, fn, owners=("alice",))(xs), np.float64)
                want = np.asarray(fn(xs.astype(np.float64)))
                err = np.abs(got - want) / np.maximum(np.abs(want), 64 * 2.0**-f)
                bad = xs[err > 0.05]
                cells.append(f"{np.log2(bad[0]) - f:+8.2f}" if bad.size else "   ok   ")
        print(f"{protocol:8} {field:5} {f:2} " + "  ".join(cells))
    print("ppml_torch.runners.config.FUNCTION_RANGE_EXPONENTS:", FUNCTION_RANGE_EXPONENTS)


if __name__ == "__main__":
    main()
