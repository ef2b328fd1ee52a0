"""``ppml_torch.fit`` vs the homework's own loop vs the hand-written Flax loop, on spu SEMI2K.

Same data (the homework's breast-cancer split, alice: features 0-14 and the weights, bob:
features 15-29 and the labels), same hyper-parameters (10 epochs, batch 10, SGD 0.01 on
``mean((y - p)**2 / 2)``; ``fit`` gets ``nn.MSELoss`` at lr 0.005, the same steps), the same
initial weights (the homework's Flax init, seed 1), one SPU session, side by side:

* ``fit``: :func:`ppml_torch.apps.homework.train.train` (the torch MLP, graph and flax
  routes): one compiled epoch program (``lax.scan`` over 45 batches of 10, then the partial
  batch of 5; on the graph route padded into the batch-of-10 program, one conversion),
  called once per epoch;
* ``homework``: the SecretFlow homework's ``train_auto_grad`` rebuilt as it was written: the
  batches (``array_split``: 5 of 11 rows, 40 of 10) unrolled in Python inside a
  ``lax.fori_loop`` over the epochs, the whole training one program, one call; its loss with
  ``y`` of shape ``(n, 1)`` (the original broadcast ``(n,)`` against ``(n, 1)``);
* ``hand-written``: ``bench/flax_loop.py``, what ``homework-mlp`` ran
  before ``fit``: one Python-unrolled program per epoch, called once per epoch.

End-to-end time = everything from the plaintext model to the trained weights revealed to
alice: conversion (fit), puts, compilation, the epochs, the reveal.  AUC: plaintext, from the
revealed weights, on the test split.  Then the compile time of one epoch on a 10x larger
synthetic set (4550 rows, 455 batches of 10) against the homework's 455 rows, for ``fit`` and
for the unrolled homework loop.

    python bench/bench_fit.py            # about 2-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np

TARGET_VS_HOMEWORK = 2.0  # homework / fit end-to-end, at least
TARGET_VS_HAND = 1.15  # fit / hand-written end-to-end, at most
TARGET_AUC = 0.005
TARGET_COMPILE_SCALING = 1.5  # compile(10x batches) / compile(homework), at most


@dataclasses.dataclass
class Result:
    name: str
    wall_s: float
    compile_s: float
    comm_bytes: int
    comm_sends: int
    auc: float
    detail: str = ""


def _loss(apply_fn, params, x, y):
    import jax.numpy as jnp

    pred = apply_fn(params, x)
    return jnp.mean(jnp.multiply(y - pred, y - pred) / 2.0)


def train_auto_grad(apply_fn, n_batch=10, n_epochs=10, step_size=0.01):
    """The homework's ``train_auto_grad`` (its shape: unrolled batches inside fori_loop)."""
    import functools

    import jax
    import jax.numpy as jnp

    loss_func = functools.partial(_loss, apply_fn)

    def train(x1, x2, y, params):
        x = jnp.concatenate((x1, x2), axis=1)
        xs = jnp.array_split(x, len(x) / n_batch, axis=0)
        ys = jnp.array_split(y, len(y) / n_batch, axis=0)

        def body_fun(_, loop_carry):
            params = loop_carry
            for x, y in zip(xs, ys, strict=True):
                _, grads = jax.value_and_grad(loss_func)(params, x, y)
                params = jax.tree_util.tree_map(lambda p, g: p - step_size * g, params, grads)
            return params

        return jax.lax.fori_loop(0, n_epochs, body_fun, params)

    return train


def _totals(reports):
    from ppml_torch.runners import total

    t = total(reports)
    comm = t.comm
    return (
        (t.compile_s or 0.0),
        (comm.send_bytes if comm else 0),
        (comm.send_actions if comm else 0),
    )


def run_fit(session, data, epochs, route="graph") -> Result:
    from ppml_torch.apps.homework import train
    from ppml_torch.apps.homework.evaluate import torch_auc

    module = train.torch_mlp()  # the plaintext model (not timed: every side starts from it)
    t0 = time.perf_counter()
    module, history = train.train(session, data, module=module, epochs=epochs, route=route)
    wall = time.perf_counter() - t0
    comp, b, a = _totals(history.reports)
    run = sum(r.run_s for r in history.reports)
    detail = (
        f"{history.conversions} conversion(s), partial batch "
        f"{'padded' if history.partial_padded else 'at its own shape'}; setup (checks, "
        f"conversion, padding check) {history.setup_s:.2f}s, compile {comp:.2f}s, run {run:.2f}s, "
        f"rest {wall - history.setup_s - comp - run:.2f}s"
    )
    return Result(f"fit ({route})", wall, comp, b, a, torch_auc(module, data), detail)


def run_fit_flax(session, data, epochs) -> Result:
    return run_fit(session, data, epochs, route="flax")


def run_homework(session, data, epochs) -> Result:
    from ppml_torch.apps.homework.evaluate import evaluate_auc
    from ppml_torch.apps.homework.train import init_flax_mlp

    apply_fn, params = init_flax_mlp()
    fn = train_auto_grad(apply_fn, n_epochs=epochs)
    first = len(session.reports)
    t0 = time.perf_counter()
    hs = [
        session.put(data.x_alice_train, owner="alice"),
        session.put(data.x_bob_train, owner="bob"),
        session.put(data.y_train, owner="bob"),
        session.put(params, owner="alice"),
    ]
    out = session.call(fn, *hs, name="train_auto_grad")
    trained = session.reveal(out, to="alice")
    wall = time.perf_counter() - t0
    for h in (*hs, out):
        session.free(h)
    comp, b, a = _totals(session.reports[first:])
    return Result("homework", wall, comp, b, a, evaluate_auc(apply_fn, trained, data))


def run_hand(session, data, epochs) -> Result:
    import flax_loop  # bench/flax_loop.py, beside this script

    from ppml_torch.apps.homework.evaluate import evaluate_auc
    from ppml_torch.apps.homework.train import init_flax_mlp

    apply_fn, params = init_flax_mlp()
    first = len(session.reports)
    t0 = time.perf_counter()
    result = flax_loop.fit(session, apply_fn, params, data, epochs=epochs)
    trained = flax_loop.reveal_params(session, result)
    wall = time.perf_counter() - t0
    comp, b, a = _totals(session.reports[first:])
    return Result("hand-written", wall, comp, b, a, evaluate_auc(apply_fn, trained, data))


def synthetic(scale: int):
    """The homework's data tiled ``scale`` times with a little noise (same columns, 10x rows)."""
    from ppml_torch.apps.homework.data import HomeworkData, load_data

    d = load_data()
    rng = np.random.default_rng(0)

    def tile(a, noise):
        t = np.concatenate([a] * scale)
        return (t + noise * rng.normal(size=t.shape)).astype(np.float32) if noise else t

    return HomeworkData(
        tile(d.x_alice_train, 0.01), tile(d.x_bob_train, 0.01), tile(d.y_train, 0.0),
        d.x_alice_test, d.x_bob_test, d.y_test,
    )  # fmt: skip


def one_epoch(session, data) -> tuple[float, float, float, float]:
    """Compile time and end-to-end time of a one-epoch training on ``data``: fit (graph
    route), then the homework loop: ``(fit compile, fit wall, homework compile, wall)``."""
    from ppml_torch.apps.homework import train
    from ppml_torch.apps.homework.train import init_flax_mlp

    module = train.torch_mlp()
    t0 = time.perf_counter()
    _, history = train.train(session, data, module=module, epochs=1)
    fit_w = time.perf_counter() - t0
    fit_c = history.epochs[0].compile_s or 0.0
    apply_fn, params = init_flax_mlp()
    fn = train_auto_grad(apply_fn, n_epochs=1)
    t0 = time.perf_counter()
    hs = [
        session.put(data.x_alice_train, owner="alice"),
        session.put(data.x_bob_train, owner="bob"),
        session.put(data.y_train, owner="bob"),
        session.put(params, owner="alice"),
    ]
    out = session.call(fn, *hs, name="train_auto_grad")
    hw_c = session.last_report.compile_s or 0.0
    session.reveal(out, to="alice")
    hw_w = time.perf_counter() - t0
    for h in (*hs, out):
        session.free(h)
    return fit_c, fit_w, hw_c, hw_w


def warm_up() -> None:
    """Once-per-process start-up, untimed: a tiny plaintext ``fit`` per route on a throwaway
    module (torch.export's first-call initialisation, ~0.5 s here, and ``fit``'s first-call
    imports and tracing).  The timed runs still convert their own module."""
    import torch
    import torch.nn as nn

    from ppml_torch.train import fit, vertical

    x = np.zeros((4, 30), np.float32)
    data = vertical({"alice": (range(30), x)}, labels=("alice", x[:, :1]), weights_owner="alice")
    for route in ("graph", "flax"):
        m = nn.Sequential(nn.Linear(30, 2), nn.ReLU(), nn.Linear(2, 1))
        fit(m, nn.MSELoss(), torch.optim.SGD(m.parameters(), lr=0.1), data, route=route,
            session="cpu", batch_size=3, progress=False)  # fmt: skip


def machine() -> str:
    model = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--scale", type=int, default=10, help="rows x this for the compile check")
    p.add_argument(
        "--cold", action="store_true", help="no warm-up fit: the first fit pays the first calls"
    )
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.runners import open_session

    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")
    if args.cold:
        print("cold: fit (graph) is the process's first fit and first torch.export")
    print(
        f"jax {jax.__version__}, spu SEMI2K FM64, {args.epochs} epochs, batch 10, "
        "the homework's data and initial weights"
    )
    data = load_data()
    # once-per-process start-up, untimed: JAX's, and torch's lazy imports (torch.optim pulls in
    # torch._dynamo, ~6 s here, on the first optimizer; torch.export and its _trace module on
    # the first conversion)
    jax.jit(lambda a: a + 1)(jnp.ones(2)).block_until_ready()
    import torch._dynamo  # noqa: F401
    import torch.export  # noqa: F401
    import torch.export._trace  # noqa: F401  (imported by the first torch.export call, ~0.6 s)

    if not args.cold:
        warm_up()

    with open_session("spu", "SEMI2K", "FM64") as s:
        sides = (run_hand, run_homework, run_fit, run_fit_flax)
        results = [run(s, data, args.epochs) for run in sides]
        print(f"\n{'side':<13} {'end-to-end':>10} {'compile':>8} {'AUC':>8}  communication")
        for r in results:
            print(
                f"{r.name:<13} {r.wall_s:>9.2f}s {r.compile_s:>7.2f}s {r.auc:>8.5f}  "
                f"{_mib(r.comm_bytes)} in {r.comm_sends} sends"
            )
        hand, hw = results[:2]
        ok = []
        print()
        for fit in results[2:]:
            ratio_hw = hw.wall_s / fit.wall_s
            ratio_hand = fit.wall_s / hand.wall_s
            d_auc = max(abs(fit.auc - hw.auc), abs(fit.auc - hand.auc))
            ok += [
                ratio_hw >= TARGET_VS_HOMEWORK,
                ratio_hand <= TARGET_VS_HAND,
                d_auc <= TARGET_AUC,
            ]
            print(
                f"{fit.name}: homework / fit {ratio_hw:.2f}x (target >= {TARGET_VS_HOMEWORK}: "
                f"{'met' if ok[-3] else 'NOT met'}), fit / hand-written {ratio_hand:.2f}x "
                f"(target <= {TARGET_VS_HAND}: {'met' if ok[-2] else 'NOT met'}), "
                f"largest |dAUC| {d_auc:.5f} (target <= {TARGET_AUC}: "
                f"{'met' if ok[-1] else 'NOT met'})"
            )
        print("  (fit keeps the partial batch of 5 rows; the other two use array_split's batches)")
        for fit in results[2:]:
            print(f"  {fit.name}: {fit.detail}")

        big = synthetic(args.scale)
        fit_small, fit_small_w, hw_small, hw_small_w = one_epoch(s, data)
        fit_big, fit_big_w, hw_big, hw_big_w = one_epoch(s, big)
        rows = len(big.y_train)
        scaling = fit_big / fit_small
        ok.append(scaling <= TARGET_COMPILE_SCALING)
        print(f"\ncompile time of one epoch, {len(data.y_train)} vs {rows} rows (batch 10):")
        print(
            f"  fit:      {fit_small:.2f}s vs {fit_big:.2f}s: {scaling:.2f}x "
            f"(target <= {TARGET_COMPILE_SCALING}: {'met' if ok[-1] else 'NOT met'})"
        )
        print(
            f"  homework: {hw_small:.2f}s vs {hw_big:.2f}s: {hw_big / hw_small:.2f}x "
            f"(batches unrolled in Python)"
        )
        print(f"  fit at {rows} rows vs the homework loop at {len(data.y_train)}: "
              f"{fit_big / hw_small:.2f}x")  # fmt: skip
        print(
            f"end-to-end, one epoch at {rows} rows: fit {fit_big_w:.2f}s, homework "
            f"{hw_big_w:.2f}s (homework / fit {hw_big_w / fit_big_w:.2f}x); at "
            f"{len(data.y_train)} rows: fit {fit_small_w:.2f}s, homework {hw_small_w:.2f}s"
        )
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; targets met: {sum(ok)}/{len(ok)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
