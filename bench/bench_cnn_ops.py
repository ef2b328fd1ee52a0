"""MPC cost of the CNN lowerings' choices, side by side in one session per protocol.

    .venv/bin/python bench/bench_cnn_ops.py [--protocols SEMI2K ABY3] [--repeats 3]

1. **Max pooling**: the converter's tournament of pairwise maxima
   (``ppml_torch/converters/fx/ops/pool.py``) against SPU's own ``reduce_window`` max
   (``lax.reduce_window`` with ``lax.max``: what ``flax.linen.max_pool`` and
   ``jax.nn``-style code run) and its gradient (JAX's select-and-scatter), on the
   ResNet-ish net's pool (8x16x32x32, 2x2 stride 2), ResNet's stem pool (1x64x56x56,
   3x3 stride 2 padding 1) and a small one of the stem's kind (2x4x9x9), forward alone and
   forward + gradient.  Each row also gives the
   largest error against plaintext float32 (the gradient: against ``jax.grad`` in float);
   a program SPU refuses gets its error in the row.
2. **Eval-mode batch norm folded into the preceding convolution**: a 3x3 convolution
   (16 -> 16, 8x16x32x32, no bias) followed by batch norm as the converter lowers it, against
   the same convolution with the batch norm folded into its weights and bias in plaintext
   by the weights' owner (``W * g / sqrt(v + eps)``, ``b' = beta - mean * g / sqrt(v + eps)``).

Median run time (compilation excluded) of ``--repeats`` calls, bytes and send actions per
call (all parties, SPU's profile).  Figures and the defaults chosen from them:
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reduce_window_max(k: int, s: int, p: int) -> Callable:
    import jax.numpy as jnp
    from jax import lax

    def pool(x: Any) -> Any:
        pads = [(0, 0), (0, 0), (p, p), (p, p)]
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, s, s), pads)

    return pool


def tournament_max(shape: tuple[int, ...], k: int, s: int, p: int) -> Callable:
    import torch

    import ppml_torch

    cm = ppml_torch.convert(torch.nn.MaxPool2d(k, s, p), (torch.zeros(shape),))
    return lambda x: cm.apply(cm.params, x)


def with_grad(fn: Callable, cot: np.ndarray) -> Callable:
    import jax
    import jax.numpy as jnp

    return jax.value_and_grad(lambda x: jnp.sum(fn(x) * cot))


def measure(session: Any, fn: Callable, args: tuple, owners: tuple, repeats: int, want: Any):
    import jax

    from ppml_torch.runners import wrap

    f = wrap(session, fn, owners=owners)
    times, got = [], None
    for _ in range(repeats):
        got = f(*args)
        times.append(f.last_report.run_s)
    err = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in zip(
            jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True
        )
    )
    comm = f.last_report.comm
    return statistics.median(times), comm.send_bytes, comm.send_actions, err


def row(protocol: str, what: str, form: str, m: tuple) -> str:
    t, b, n, err = m
    return (
        f"{protocol:<7} {what:<34} {form:<13} {t:>7.3f}s {b / 2**20:>9.2f} MiB {n:>6} {err:>9.2e}"
    )


def pool_rows(session: Any, protocol: str, repeats: int, which: tuple = (0, 1, 2)) -> list[str]:
    import jax

    out = []
    rng = np.random.default_rng(0)
    shapes = (((8, 16, 32, 32), (2, 2, 0)), ((1, 64, 56, 56), (3, 2, 1)), ((2, 4, 9, 9), (3, 2, 1)))
    for shape, (k, s, p) in (shapes[i] for i in which):
        x = rng.normal(size=shape).astype(np.float32)
        forms = {
            "tournament": tournament_max(shape, k, s, p),
            "reduce_window": reduce_window_max(k, s, p),
        }
        oshape = jax.eval_shape(forms["reduce_window"], x).shape
        cot = rng.normal(size=oshape).astype(np.float32)
        label = f"maxpool {'x'.join(map(str, shape))} {k}x{k}/{s} p{p}"
        for mode in ("forward", "fwd+grad"):
            for name, fn in forms.items():
                g = fn if mode == "forward" else with_grad(fn, cot)
                want = jax.jit(with_grad(forms["tournament"], cot) if mode != "forward" else fn)(x)
                try:
                    m = measure(session, g, (x,), ("alice",), repeats, want)
                    out.append(row(protocol, f"{label} {mode}", name, m))
                except RuntimeError as e:  # SPU refuses some programs: say so in the row
                    why = " ".join(str(e).split())[:120]
                    out.append(f"{protocol:<7} {f'{label} {mode}':<34} {name:<13} SPU error: {why}")
                print(out[-1], flush=True)
    return out


def fold_rows(session: Any, protocol: str, repeats: int) -> list[str]:
    import jax
    import torch

    import ppml_torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(16)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded = torch.nn.Conv2d(16, 16, 3, padding=1, bias=True)
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_(bn.bias - bn.running_mean * scale)
    x = torch.randn(8, 16, 32, 32)
    out = []
    for name, module in (
        ("as is", torch.nn.Sequential(conv, bn).eval()),
        ("folded", folded.eval()),
    ):
        cm = ppml_torch.convert(module, (x,))
        want = jax.jit(cm.apply)(cm.params, x.numpy())
        m = measure(session, cm.apply, (cm.params, x.numpy()), ("alice", "bob"), repeats, want)
        out.append(row(protocol, "conv3x3 16->16 8x16x32x32 + BN", name, m))
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import os

    from ppml_torch.runners import open_session

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocols", nargs="+", default=["SEMI2K", "ABY3"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=("pool", "pool-small", "fold"))
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"FM64; median of {args.repeats} runs; load average {load:.1f} at start")
    print(
        f"{'proto':<7} {'what':<34} {'form':<13} {'run':>8} {'sent':>13} {'sends':>6} {'max err':>9}"
    )
    for protocol in args.protocols:
        with open_session("spu", protocol, "FM64") as s:
            if args.only in (None, "pool", "pool-small"):
                pool_rows(
                    s, protocol, args.repeats, (2,) if args.only == "pool-small" else (0, 1, 2)
                )
            if args.only in (None, "fold"):
                fold_rows(s, protocol, args.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
