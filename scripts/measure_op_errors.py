"""Measure the error of every op SPU approximates, per protocol and field; write the table.

    python scripts/measure_op_errors.py                 # every setting, writes the table
    python scripts/measure_op_errors.py --settings SEMI2K:FM64 --dry-run

Each op of the converter's op table marked ``approximate-under-MPC`` is converted from a
one-op torch module by the graph route (so what is measured is what a converted model runs)
and run under SPU on inputs in a realistic range (attention logits, activations, variances),
next to torch eager.  The largest absolute error of the output and of the gradient of
``sum(op(x))`` w.r.t. the inputs and the op's weights (a norm's affine weights) are stored in ``ppml_torch/equivalence/op_errors.json``,
which :mod:`ppml_torch.equivalence.tolerances` turns into a model's default tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "ppml_torch" / "equivalence" / "op_errors.json"
SETTINGS = [
    "SEMI2K:FM64",
    "CHEETAH:FM64",
    "ABY3:FM64",
    "SEMI2K:FM128",
    "CHEETAH:FM128",
    "ABY3:FM128",
]
SHAPE = (8, 64)


def U(lo, hi, shape=SHAPE):
    return lambda rng: torch.tensor(rng.uniform(lo, hi, shape), dtype=torch.float32)


def N(mu, sigma, shape=SHAPE):
    return lambda rng: torch.tensor(rng.normal(mu, sigma, shape), dtype=torch.float32)


def signed(lo, hi, shape=SHAPE):
    def gen(rng):
        mag = rng.uniform(lo, hi, shape)
        return torch.tensor(mag * rng.choice([-1.0, 1.0], shape), dtype=torch.float32)

    return gen


def _bn():
    m = torch.nn.BatchNorm1d(64).eval()
    with torch.no_grad():
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.2, 4)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    return m


class BNTrain(torch.nn.Module):
    """Batch norm in training mode whose running statistics are copies (nothing to return)."""

    def __init__(self):
        super().__init__()
        self.bn = _bn()

    def forward(self, x):
        bn = self.bn
        rm, rv = bn.running_mean.clone(), bn.running_var.clone()
        return F.batch_norm(x, rm, rv, bn.weight, bn.bias, True, 0.1, bn.eps)


def _gn():
    m = torch.nn.GroupNorm(8, 64)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    return m


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


# op name -> [(label, module factory, input generators)]; several cases per op take the max.
CASES = {
    "aten.exp.default": [("exp x in [-8, 3]", lambda: Fn(torch.exp), [U(-8, 3)])],
    "aten.exp2.default": [("exp2 x in [-8, 4]", lambda: Fn(torch.exp2), [U(-8, 4)])],
    "aten.expm1.default": [("expm1 x in [-5, 2]", lambda: Fn(torch.expm1), [U(-5, 2)])],
    "aten.log.default": [("log x in [0.05, 30]", lambda: Fn(torch.log), [U(0.05, 30)])],
    "aten.log2.default": [("log2 x in [0.05, 30]", lambda: Fn(torch.log2), [U(0.05, 30)])],
    "aten.log1p.default": [("log1p x in [0, 30]", lambda: Fn(torch.log1p), [U(0, 30)])],
    "aten.reciprocal.default": [
        ("1/x |x| in [0.2, 20]", lambda: Fn(torch.reciprocal), [signed(0.2, 20)])
    ],
    "aten.div.Tensor": [
        ("x/y, x in [-5, 5], |y| in [0.5, 10]", lambda: Fn(torch.div), [U(-5, 5), signed(0.5, 10)])
    ],
    "aten.rsqrt.default": [("rsqrt x in [0.01, 50]", lambda: Fn(torch.rsqrt), [U(0.01, 50)])],
    "aten.sqrt.default": [("sqrt x in [0.01, 50]", lambda: Fn(torch.sqrt), [U(0.01, 50)])],
    "aten.tanh.default": [("tanh x in [-5, 5]", lambda: Fn(torch.tanh), [U(-5, 5)])],
    "aten.sigmoid.default": [("sigmoid x in [-8, 8]", lambda: Fn(torch.sigmoid), [U(-8, 8)])],
    "aten.erf.default": [("erf x in [-3, 3]", lambda: Fn(torch.erf), [U(-3, 3)])],
    "aten.sin.default": [("sin x in [-pi, pi]", lambda: Fn(torch.sin), [U(-math.pi, math.pi)])],
    "aten.cos.default": [("cos x in [-pi, pi]", lambda: Fn(torch.cos), [U(-math.pi, math.pi)])],
    "aten.pow.Tensor_Scalar": [
        ("x**1.5 x in [0.1, 10]", lambda: Fn(lambda x: x**1.5), [U(0.1, 10)])
    ],
    "aten.pow.Tensor_Tensor": [
        ("x**y x in [0.5, 4], y in [-2, 2]", lambda: Fn(torch.pow), [U(0.5, 4), U(-2, 2)])
    ],
    "aten.pow.Scalar": [("2**x x in [-3, 3]", lambda: Fn(lambda x: 2.0**x), [U(-3, 3)])],
    "aten.gelu.default": [
        ("gelu x in [-5, 5]", lambda: torch.nn.GELU(), [U(-5, 5)]),
        ("gelu(tanh) x in [-5, 5]", lambda: torch.nn.GELU(approximate="tanh"), [U(-5, 5)]),
    ],
    "aten.silu.default": [("silu x in [-8, 8]", lambda: torch.nn.SiLU(), [U(-8, 8)])],
    "aten.elu.default": [("elu x in [-5, 5]", lambda: torch.nn.ELU(), [U(-5, 5)])],
    "aten.softplus.default": [("softplus x in [-8, 8]", lambda: torch.nn.Softplus(), [U(-8, 8)])],
    "aten._softmax.default": [
        ("softmax rows of 64, logits N(0, 3)", lambda: torch.nn.Softmax(-1), [N(0, 3)])
    ],
    "aten._log_softmax.default": [
        ("log_softmax rows of 64, logits N(0, 3)", lambda: torch.nn.LogSoftmax(-1), [N(0, 3)])
    ],
    "aten.logsumexp.default": [
        ("logsumexp rows of 64, N(0, 3)", lambda: Fn(lambda x: torch.logsumexp(x, -1)), [N(0, 3)])
    ],
    "aten.std.correction": [
        ("std rows of 64, N(0, 2)", lambda: Fn(lambda x: x.std(-1)), [N(0, 2)])
    ],
    "aten.native_layer_norm.default": [
        ("layer_norm rows of 64, N(0.5, 2)", lambda: torch.nn.LayerNorm(64), [N(0.5, 2)])
    ],
    "aten._native_batch_norm_legit_no_training.default": [
        ("batch_norm eval, N(0, 2)", _bn, [N(0, 2)])
    ],
    "aten._native_batch_norm_legit_functional.default": [
        ("batch_norm train, N(0.5, 2)", BNTrain, [N(0.5, 2)])
    ],
    "aten._native_batch_norm_legit.no_stats": [
        (
            "instance_norm (4, 64, 16), N(0.5, 2)",
            lambda: torch.nn.InstanceNorm1d(64, affine=True),
            [N(0.5, 2, (4, 64, 16))],
        )
    ],
    "aten.native_group_norm.default": [("group_norm 8 groups, N(0.5, 2)", _gn, [N(0.5, 2)])],
    "aten.scaled_dot_product_attention.default": [
        (
            "causal attention (1, 2, 16, 16), N(0, 1)",
            lambda: Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
            [N(0, 1, (1, 2, 16, 16))] * 3,
        )
    ],
}


def measure_case(session, factory, gens, rng):
    import jax
    import jax.numpy as jnp

    import ppml_torch
    from ppml_torch.runners import wrap

    module = factory()
    xs = tuple(g(rng) for g in gens)
    cm = ppml_torch.convert(module, xs)
    ops = {s.op for s in cm.extras["program"].steps}
    # torch reference: output and d sum(out) / d inputs
    txs = [x.clone().requires_grad_(True) for x in xs]
    out = module(*txs)
    grads = torch.autograd.grad(out.sum(), txs)
    ref_out = out.detach().numpy()
    ref_g = [g.numpy() for g in grads]

    params = cm.params  # weights (alice's); a parameter-free op has none to share
    # and d sum(out) / d weights (a batch norm's weight gradient sums over the batch)
    names = [n for n, _ in module.named_parameters() if n in params]
    ref_pg = dict(
        zip(names, torch.autograd.grad(module(*xs).sum(), [dict(module.named_parameters())[n]
                                                           for n in names]), strict=True)
    ) if names else {}  # fmt: skip

    def fn(*inputs):
        weights = {n: params[n] for n in names}  # float weights only (not num_batches_tracked)

        def total(w, *ins):
            return jnp.sum(cm.apply({**params, **w}, *ins))

        g = jax.grad(total, argnums=tuple(range(len(inputs) + 1)))(weights, *inputs)
        return cm.apply(params, *inputs), g[1:], g[0]

    if params:  # weights enter as alice's secret, inputs as bob's

        def fn_p(p, *inputs):
            nonlocal params
            params = p
            return fn(*inputs)

        got_out, got_g, got_pg = wrap(session, fn_p, ("alice",) + ("bob",) * len(xs))(
            cm.params, *[x.numpy() for x in xs]
        )
    else:
        got_out, got_g, got_pg = wrap(session, fn, ("bob",) * len(xs))(*[x.numpy() for x in xs])
    err = float(np.max(np.abs(np.asarray(got_out, np.float64) - ref_out)))
    gerr = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - b)))
        for a, b in [
            *zip(got_g, ref_g, strict=True),
            *((got_pg[n], ref_pg[n].numpy()) for n in names),
        ]
    )
    return err, gerr, float(np.max(np.abs(ref_out))), {str(o) for o in ops}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=SETTINGS, help="PROTOCOL:FIELD list")
    p.add_argument("--ops", nargs="+", help="only these ops (names as in `ppml-torch ops`)")
    p.add_argument("--dry-run", action="store_true", help="print, do not write the table")
    args = p.parse_args(argv)

    from ppml_torch.converters.fx import registry
    from ppml_torch.runners import open_session

    approx = sorted(e.name for e in registry.load().values() if e.status == "approximate-under-MPC")
    ops = args.ops or approx
    table = json.loads(OUT.read_text()) if OUT.exists() else {}
    errors = table.setdefault("errors", {})
    for setting in args.settings:
        protocol, field = setting.split(":")
        rows = errors.setdefault(setting, {})
        t0 = time.perf_counter()
        with open_session("spu", protocol, field) as s:
            for op in ops:
                if op not in CASES:
                    print(f"{setting:<14} {op:<50} not measured (no case)")
                    continue
                worst = {"out": 0.0, "grad": 0.0, "scale": 0.0}
                for label, factory, gens in CASES[op]:
                    rng = np.random.default_rng(0)
                    err, gerr, scale, used = measure_case(s, factory, gens, rng)
                    if op not in used:  # torch.export decomposed it: its parts are measured
                        print(f"{setting:<14} {label:<42} decomposed ({', '.join(sorted(used))})")
                        worst = None
                        break
                    worst = {
                        "out": max(worst["out"], err),
                        "grad": max(worst["grad"], gerr),
                        "scale": max(worst["scale"], scale),
                    }
                    print(f"{setting:<14} {label:<42} out {err:.2e}  grad {gerr:.2e}", flush=True)
                if worst is not None:
                    rows[op] = {k: float(f"{v:.3g}") for k, v in worst.items()}
        print(f"{setting}: {time.perf_counter() - t0:.0f}s", flush=True)
    if args.dry_run:
        return 0
    missing = sorted(set(approx) - set(errors[args.settings[0]]))
    table["about"] = (
        "Largest absolute error vs torch eager of each approximated op's output ('out') and of "
        "the gradient of sum(op(x)) w.r.t. its inputs and weights ('grad'), on the input ranges of "
        "scripts/measure_op_errors.py ('scale': largest |output|); SPU defaults of ppml-torch."
    )
    table["unmeasured"] = missing
    OUT.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}; ops without a case: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
