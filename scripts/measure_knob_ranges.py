"""Measure where SPU's iteration knobs and fraction bits stop giving right numbers.

The ranges :mod:`ppml_torch.runners.config` accepts (``KNOB_RANGES``, ``MIN_FRACTION_BITS``,
``MIN_PRODUCT_LIMIT``) come from this script's output.  For every value of a knob it runs the
function that knob controls under SPU (SEMI2K, in-process simulator, the knob set directly,
bypassing ppml-torch's own checks) on a grid of ordinary arguments and prints the largest
absolute error against numpy.

    .venv/bin/python scripts/measure_knob_ranges.py            # about 3 minutes
"""

from __future__ import annotations

import argparse

import numpy as np

# knob -> (the function it controls, its numpy reference, arguments, extra settings)
CASES = {
    "fxp_exp_iters": (
        "exp",
        np.exp,
        np.linspace(-8.0, 4.0, 49),
        {"fxp_exp_mode": "EXP_TAYLOR"},
    ),
    "fxp_log_iters": ("log", np.log, np.linspace(0.05, 60.0, 49), {"fxp_log_mode": "LOG_NEWTON"}),
    "fxp_log_orders": ("log", np.log, np.linspace(0.05, 60.0, 49), {"fxp_log_mode": "LOG_NEWTON"}),
    "fxp_div_goldschmidt_iters": (
        "reciprocal",
        np.reciprocal,
        np.concatenate([np.linspace(-50, -0.05, 25), np.linspace(0.05, 50, 25)]),
        {},
    ),
    "sine_cosine_iters": ("sin", np.sin, np.linspace(-6.0, 6.0, 49), {}),
}
VALUES = {
    "fxp_exp_iters": [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 32, 64],
    "fxp_log_iters": [1, 2, 3, 4, 5, 6, 8, 10, 16, 32, 64],
    "fxp_log_orders": [1, 2, 4, 6, 8, 10, 12, 16, 32, 64],
    "fxp_div_goldschmidt_iters": [1, 2, 3, 4, 5, 6, 8, 10, 16, 32, 64],
    "sine_cosine_iters": [1, 2, 4, 6, 8, 10, 12, 16, 32, 64],
}


def run(fn_name: str, x: np.ndarray, field: str, settings: dict) -> np.ndarray:
    import jax.numpy as jnp
    import spu
    import spu.utils.simulation as spsim
    from spu import spu_pb2

    rc = spu_pb2.RuntimeConfig(
        protocol=spu_pb2.ProtocolKind.Value("SEMI2K"), field=spu_pb2.FieldType.Value(field)
    )
    fields = rc.DESCRIPTOR.fields_by_name
    for k, v in settings.items():
        enum = fields[k].enum_type
        setattr(rc, k, enum.values_by_name[v].number if enum is not None else v)
    sim = spsim.Simulator(2, rc)
    fn = getattr(jnp, fn_name)
    del spu
    return np.asarray(spsim.sim_jax(sim, fn)(x.astype(np.float32)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--field", default="FM64")
    args = p.parse_args()
    for knob, (fn_name, ref, x, extra) in CASES.items():
        print(f"{knob} ({fn_name} over [{x.min():g}, {x.max():g}], {args.field}):")
        want = ref(x.astype(np.float64))
        for v in VALUES[knob]:
            got = run(fn_name, x, args.field, {**extra, knob: v})
            err = np.abs(got - want)
            rel = err / np.maximum(np.abs(want), 1.0)
            print(
                f"  {v:4d}: largest error {err.max():.3g} (relative to max(|want|, 1): {rel.max():.3g})"
            )
    print("fraction bits, product a*b for a, b in {0.3, 3, 10, 100, 1000} (SEMI2K, FM64):")
    grid = np.array([0.3, 3.0, 10.0, 100.0, 1000.0], np.float32)
    a, b = np.meshgrid(grid, grid)
    for f in (1, 4, 6, 8, 10, 12, 18, 24, 26, 27, 28, 30):
        import jax.numpy as jnp  # noqa: F401 - run() imports it too

        got = run_product(a.ravel(), b.ravel(), args.field, f)
        want = (a * b).ravel()
        ok = np.abs(got - want) <= np.maximum(0.02 * np.abs(want), 2.0**-f * 4)
        wrong = ", ".join(
            f"{x:g}*{y:g}={g:.4g}"
            for x, y, g, o in zip(a.ravel(), b.ravel(), got, ok, strict=True)
            if not o
        )
        print(f"  f={f:2d}: {int(ok.sum())}/{ok.size} right{'; wrong: ' + wrong if wrong else ''}")


def run_product(a: np.ndarray, b: np.ndarray, field: str, f: int) -> np.ndarray:
    import spu.utils.simulation as spsim
    from spu import spu_pb2

    rc = spu_pb2.RuntimeConfig(
        protocol=spu_pb2.ProtocolKind.Value("SEMI2K"),
        field=spu_pb2.FieldType.Value(field),
        fxp_fraction_bits=f,
    )
    sim = spsim.Simulator(2, rc)
    return np.asarray(spsim.sim_jax(sim, lambda x, y: x * y)(a, b))


if __name__ == "__main__":
    main()
