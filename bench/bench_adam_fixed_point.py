"""Adam under fixed point: how far SPU training drifts from torch's Adam, per variant.

A tiny regression MLP (6 -> 16 -> 1, ReLU, 129 parameters) is trained for a few full-batch
steps with torch.optim.Adam in plaintext (the reference) and on ``spu`` with weights put by
alice and data by bob; the whole step (forward, gradient, optimizer) runs under MPC.  After
every step the weights are revealed (for this measurement only) and compared with torch's.

Printed per variant: the largest |w_mpc - w_torch| after each step, and that error relative to
how far torch moved the weights (max |w_torch - w_0|) after the last step.

    python bench/bench_adam_fixed_point.py [--steps 20] [--lr 0.01] [--fields FM64 FM128] [--y-scales 1 20]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import ppml_torch
from ppml_torch.runners import open_session
from ppml_torch.train.optim import adam_moment_scale, torch_adam


def problem(seed: int = 0, rows: int = 32, y_scale: float = 1.0):
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(rows, 6, generator=g)
    y = (x[:, :1] * 0.5 - x[:, 1:2] * x[:, 2:3] * 0.3 + 0.1).detach() * y_scale
    return module, x, y


def torch_reference(steps: int, lr: float, y_scale: float) -> list[dict[str, np.ndarray]]:
    module, x, y = problem(y_scale=y_scale)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    out = [{k: v.detach().numpy().copy() for k, v in module.state_dict().items()}]
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(module(x), y).backward()
        opt.step()
        out.append({k: v.detach().numpy().copy() for k, v in module.state_dict().items()})
    return out


def grad_magnitudes(steps: int, lr: float, y_scale: float) -> tuple[float, float, float]:
    """Median, 10th percentile and max |g| over the first steps (plaintext)."""
    module, x, y = problem(y_scale=y_scale)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    gs = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(module(x), y).backward()
        gs.append(np.concatenate([p.grad.numpy().ravel() for p in module.parameters()]))
        opt.step()
    a = np.abs(np.concatenate(gs))
    a = a[a > 0]
    return float(np.median(a)), float(np.percentile(a, 10)), float(a.max())


def mpc_run(session, steps, lr, y_scale, eps, scale, eps_floor):
    module, x, y = problem(y_scale=y_scale)
    model = ppml_torch.convert(module, (x,))
    adam = torch_adam(0.9, 0.999, eps, scale=scale, eps_floor=eps_floor)
    tx = optax.chain(adam, optax.scale(-lr))

    def loss(p, xb, yb):
        return jnp.mean((model.apply(p, xb) - yb) ** 2)

    def init(p):
        return p, tx.init(p)

    def step(ps, xb, yb):
        p, s = ps
        updates, s = tx.update(jax.grad(loss)(p, xb, yb), s, p)
        return optax.apply_updates(p, updates), s

    ph = session.put({k: np.asarray(v) for k, v in model.params.items()}, owner="alice")
    xh = session.put(x.numpy(), owner="bob")
    yh = session.put(y.numpy(), owner="bob")
    ps = session.call(init, ph)
    out = []
    for _ in range(steps):
        new = session.call(step, ps, xh, yh)
        session.free(ps)
        ps = new
        p, _ = session.reveal(ps)
        out.append(model.params_to_torch(p))
    for h in (ph, xh, yh, ps):
        session.free(h)
    return out


def max_err(a: dict, b: dict) -> float:
    return max(float(np.abs(np.asarray(a[k], np.float64) - b[k]).max()) for k in b)


SHOWN = (1, 2, 3, 5, 10, 20, 30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--fields", nargs="+", default=["FM64", "FM128"])
    ap.add_argument("--fm64-scales", nargs="+", type=int, default=[8, 10])
    ap.add_argument("--fm128-scales", nargs="+", type=int, default=[10])
    ap.add_argument("--repeat", type=int, default=3, help="runs of from_torch's variant")
    ap.add_argument("--y-scales", nargs="+", type=float, default=[1.0, 20.0])
    args = ap.parse_args()
    steps, lr = args.steps, args.lr
    args.scales = {"FM64": args.fm64_scales, "FM128": args.fm128_scales}
    shown = [i for i in SHOWN if i <= steps]

    refs, moved = {}, {}
    for ys in args.y_scales:
        med, p10, gmax = grad_magnitudes(steps, lr, ys)
        refs[ys] = torch_reference(steps, lr, ys)
        moved[ys] = max_err(refs[ys][-1], refs[ys][0])
        print(
            f"targets x{ys:g}: |g| over {steps} steps median {med:.2g}, 10th pct {p10:.2g}, "
            f"max {gmax:.2g}; torch Adam lr={lr} moved the weights by up to {moved[ys]:.3g}"
        )

    variants = []
    for field in args.fields:
        bits = 18 if field == "FM64" else 26
        s_auto, floor_auto = adam_moment_scale(field, bits)
        ulp = 2.0**-bits
        variants += [
            (field, None, "plain (torch arithmetic)", 1e-8, 1.0, 0.0),
            (field, None, "plain, eps=1e-3", 1e-3, 1.0, 0.0),
        ]
        for k in args.scales[field]:
            s = 2.0**k
            for floor, what in ((ulp, "1 step"), (math.sqrt(32 * ulp), "sqrt(32 steps)")):
                name = f"scaled s=2^{k}, s*eps >= {what}"
                chosen = (s, floor) == (s_auto, floor_auto)
                for r in range(args.repeat if chosen else 1):
                    tag = f" (from_torch, run {r + 1})" if chosen else ""
                    variants.append((field, None, name + tag, 1e-8, s, floor))
        if field == "FM64":
            variants.append(
                (field, {"fxp_fraction_bits": 24}, "plain, 24 fraction bits", 1e-8, 1.0, 0.0)
            )
    print()
    print("max |w_spu - w_torch| after step n; last column: that error / max |w_torch - w_0|")
    print()
    cols = " | ".join(f"step {i}" for i in shown)
    print(f"| setting | targets | variant | {cols} | err / moved |")
    print("|" + " --- |" * (len(shown) + 4))
    sessions: dict = {}
    for field, runtime, name, eps, scale, floor in variants:
        key = (field, tuple(sorted((runtime or {}).items())))
        if key not in sessions:
            for s in sessions.values():
                s.close()
            sessions = {key: open_session("spu", "SEMI2K", field, runtime=runtime, profile=False)}
        for ys in args.y_scales:
            try:
                got = mpc_run(sessions[key], steps, lr, ys, eps, scale, floor)
                errs = [max_err(g, r) for g, r in zip(got, refs[ys][1:], strict=True)]
                cells = " | ".join(f"{errs[i - 1]:.2g}" for i in shown)
                rel = f"{errs[-1] / moved[ys]:.2g}"
            except Exception as e:  # report, keep measuring the others
                cells = f"failed: {type(e).__name__}: {str(e)[:80]}"
                rel = "-"
            setting = f"SEMI2K {field}" + (" f=24" if runtime else "")
            print(f"| {setting} | x{ys:g} | {name} | {cells} | {rel} |", flush=True)
    for s in sessions.values():
        s.close()


if __name__ == "__main__":
    main()
