"""The two lowerings of gathers on input (secret) indices under SPU, alone: bytes, rounds, time.

``convert(..., index_lowering=...)`` lowers token-id embeddings and label gathers as
``"take"`` (a gather) or ``"one_hot"`` (a one-hot product); this measures both, on the
converter's own lowerings (``ppml_torch/converters/fx/ops/index_lowering.py``), for

* ``embedding``: ``table[ids]``, a (vocab, width) table and ``--tokens`` ids;
* ``labels``: ``take_along_axis(scores, labels[:, None], 1)``, the gather of a cross entropy;

in three modes: ``forward``, ``grad`` (gradient w.r.t. the table alone) and ``train``
(value and gradient, one training step).  ``--scatter`` adds JAX's own gradient of
``jnp.take`` (a scatter-add with secret indices, what the converter avoids): minutes per run.
Run from the repository root::

    .venv/bin/python bench/bench_index_lowering.py
    .venv/bin/python bench/bench_index_lowering.py --protocols ABY3 --vocab 256 --scatter
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

LOWERINGS = ("take", "one_hot")


def embedding_case(vocab: int, width: int, tokens: int) -> tuple[str, tuple, Callable]:
    from ppml_torch.converters.fx.ops.index_lowering import take_input

    rng = np.random.default_rng(0)
    table = rng.normal(size=(vocab, width)).astype(np.float32)
    ids = rng.integers(0, vocab, size=(1, tokens)).astype(np.int32)
    cot = rng.normal(size=(1, tokens, width)).astype(np.float32)

    def make(how: str) -> Callable:
        if how == "jax-scatter":
            return lambda t, i: jnp.take(t, i, axis=0)
        return lambda t, i: take_input(t, i, 0, how)

    return f"embedding {vocab}x{width}, {tokens} ids", (table, ids, cot), make


def labels_case(batch: int, classes: int) -> tuple[str, tuple, Callable]:
    from ppml_torch.converters.fx.ops.index_lowering import take_along_input

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(batch, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=(batch, 1)).astype(np.int32)
    cot = rng.normal(size=(batch, 1)).astype(np.float32)

    def make(how: str) -> Callable:
        if how == "jax-scatter":
            return lambda s, i: jnp.take_along_axis(s, i, 1)
        return lambda s, i: take_along_input(s, i, 1, how)

    return f"labels {batch}x{classes}", (scores, labels, cot), make


def program(gather: Callable, mode: str) -> tuple[Callable, int]:
    """The measured function and how many of (table, ids, cotangent) it takes."""
    if mode == "forward":
        return gather, 2

    def loss(t: Any, i: Any, c: Any) -> Any:
        return jnp.sum(gather(t, i) * c)

    return (jax.grad(loss) if mode == "grad" else jax.value_and_grad(loss)), 3


def measure(session: Any, fn: Callable, args: tuple, runs: int) -> tuple[int, int, float, float]:
    """(send bytes, send actions, median run time, max error vs plaintext)."""
    want = jax.jit(fn)(*args)
    owners = ("alice", "bob", "alice")
    handles = [session.put(a, owner=o) for a, o in zip(args, owners, strict=False)]
    times, err = [], 0.0
    for i in range(runs + 1):  # call 0 compiles
        out = session.call(fn, *handles, name="gather")
        report = session.last_report
        if i:
            times.append(report.run_s)
        else:
            got = session.reveal(out)
            err = max(
                float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(
                    jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True
                )
            )
        session.free(out)
    for h in handles:
        session.free(h)
    return report.comm.send_bytes, report.comm.send_actions, statistics.median(times), err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocols", default="ABY3,SEMI2K,CHEETAH")
    p.add_argument("--field", default="FM64")
    p.add_argument("--vocab", default="256,2048", help="embedding table sizes")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--labels", default="64x10,8x1000", help="BATCHxCLASSES label gathers")
    p.add_argument("--modes", default="forward,grad,train", help="forward, grad, train")
    p.add_argument("--runs", type=int, default=2, help="timed SPU runs (median reported)")
    p.add_argument("--scatter", action="store_true", help="add JAX's scatter gradient (slow)")
    args = p.parse_args(argv)

    from ppml_torch.runners import open_session

    cases = [embedding_case(int(v), args.width, args.tokens) for v in args.vocab.split(",") if v]
    cases += [labels_case(*map(int, bc.split("x"))) for bc in args.labels.split(",") if bc]
    print(
        f"{'protocol':9}{'case':30}{'mode':9}{'lowering':13}{'send bytes':>15}"
        f"{'actions':>9}{'time':>9}{'err':>9}"
    )
    for protocol in args.protocols.split(","):
        with open_session("spu", protocol, args.field) as s:
            for what, data, make in cases:
                for mode in args.modes.split(","):
                    hows = list(LOWERINGS)
                    if args.scatter and mode != "forward":
                        hows.append("jax-scatter")
                    for how in hows:
                        fn, n = program(make(how), mode)
                        nbytes, actions, t, err = measure(s, fn, data[:n], args.runs)
                        print(
                            f"{protocol:9}{what:30}{mode:9}{how:13}{nbytes:>15,}{actions:>9}"
                            f"{t:>8.3f}s{err:>9.1e}",
                            flush=True,
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
