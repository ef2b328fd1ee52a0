"""Converted (graph route) vs hand-written Flax, side by side, in plaintext and under SPU.

Two cases, each with the same weights on both sides:

* ``mlp``: the homework MLP ``[30, 15, 8, 1]``, forward + backward (``jax.grad`` of the MSE loss
  on a batch).  Hand-written: ``ppml_torch.models.mlp.MLP``; converted: the same network as a
  torch ``nn.Sequential`` through ``ppml_torch.converters.fx.convert``.
* ``gpt2``: a tiny GPT-2 forward (logits).  Hand-written: transformers' ``FlaxGPT2LMHeadModel``
  loaded ``from_pt`` from a saved torch ``GPT2LMHeadModel``; converted: that torch model.

For each it prints plaintext jit time, SPU run time (median of ``--runs``) and SPU
communication (deterministic) for both sides, the converted/hand-written ratios against the
targets (comm <= 1.00, SPU time <= 1.10), and, from SPU's per-op profile, the pphlo ops where
the converted program costs more.  Run from the repository root::

    .venv/bin/python bench/bench_convert.py                 # both cases
    .venv/bin/python bench/bench_convert.py --cases mlp --runs 3
    .venv/bin/python bench/bench_convert.py --cases gpt2 --index-lowering one_hot
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TARGET_COMM = 1.00
TARGET_SPU_TIME = 1.10

_OP_LINE = re.compile(
    r"- (pphlo\.\w+), executed (\d+) times, duration ([\d.e+-]+)s, "
    r"send bytes (\d+) recv bytes \d+, send actions (\d+)"
)


# -- cases --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Side:
    fn: Callable[..., Any]  # pure JAX, called as fn(*args)
    args: tuple[Any, ...]


@dataclasses.dataclass
class Case:
    name: str
    what: str
    protocol: str
    owners: tuple[str, ...]  # one per argument
    hand: Side
    conv: Side | None
    conv_error: str | None = None
    # maps the converted side's output to the hand-written side's layout, for comparison
    conv_to_hand: Callable[[Any], Any] = lambda out: out


def _convert(module, example_args, args: argparse.Namespace):
    from ppml_torch.converters.fx import convert

    return convert(module, example_args, {}, index_lowering=args.index_lowering)


def mlp_case(args: argparse.Namespace) -> Case:
    import torch

    from ppml_torch.models.mlp import HOMEWORK_FEATURES, MLP

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 30)).astype(np.float32)
    y = (rng.random(args.batch) > 0.5).astype(np.float32)
    flax_mlp = MLP(features=HOMEWORK_FEATURES, activation="relu")
    fparams = flax_mlp.init(jax.random.PRNGKey(0), x)

    def hand_loss(p, x, y):
        return jnp.mean((y - flax_mlp.apply(p, x)[:, 0]) ** 2 / 2)

    hand_grad = jax.grad(hand_loss)

    # the same network in torch, with the Flax weights (kernels are (in, out), torch (out, in))
    widths = (30, *HOMEWORK_FEATURES)
    layers: list[torch.nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i != len(widths) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).eval()
    with torch.no_grad():
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for i, lin in enumerate(linears):
            dense = fparams["params"][f"Dense_{i}"]
            lin.weight.copy_(torch.from_numpy(np.asarray(dense["kernel"]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.array(dense["bias"])))

    hand = Side(hand_grad, (fparams, x, y))
    what = f"MLP {list(widths)} forward+backward, batch {args.batch}"
    owners = ("alice", "bob", "alice")
    try:
        model = _convert(net, (torch.from_numpy(x),), args)
    except Exception as e:  # noqa: BLE001 - reported in the output, the other side still runs
        return Case("mlp", what, args.mlp_protocol, owners, hand, None, _short(e))

    def conv_loss(p, x, y):
        return jnp.mean((y - model.apply(p, x)[:, 0]) ** 2 / 2)

    conv_grad = jax.grad(conv_loss)
    linear_names = [f"{i}" for i, m in enumerate(net) if isinstance(m, torch.nn.Linear)]

    def conv_to_hand(g):  # torch-named gradient -> the Flax tree: Linear i -> Dense_i
        return {
            "params": {
                f"Dense_{i}": {"bias": g[f"{n}.bias"], "kernel": jnp.transpose(g[f"{n}.weight"])}
                for i, n in enumerate(linear_names)
            }
        }

    conv = Side(conv_grad, (model.params, x, y))
    return Case("mlp", what, args.mlp_protocol, owners, hand, conv, None, conv_to_hand)


def gpt2_case(args: argparse.Namespace) -> Case:
    import torch
    from transformers import FlaxGPT2LMHeadModel, GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=args.gpt2_layers,
        n_embd=args.gpt2_embd,
        n_head=args.gpt2_heads,
        vocab_size=args.gpt2_vocab,
        n_positions=max(32, args.seq),
        use_cache=False,
    )
    if args.attn_implementation:
        cfg._attn_implementation = args.attn_implementation
    torch.manual_seed(0)
    tmodel = GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmodel.save_pretrained(tmp)
        fmodel = FlaxGPT2LMHeadModel.from_pretrained(tmp, from_pt=True)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(1, args.seq)).astype(np.int32)

    def hand_forward(params, ids):
        return fmodel(ids, params=params).logits

    hand = Side(hand_forward, (fmodel.params, ids))
    what = (
        f"GPT-2 forward, {cfg.n_layer} layers, {cfg.n_embd} wide, {cfg.n_head} heads, "
        f"vocab {cfg.vocab_size}, {args.seq} tokens; converted with "
        f"index_lowering={args.index_lowering!r}"
    )
    owners = ("alice", "bob")
    try:
        model = _convert(tmodel, (torch.from_numpy(ids.astype(np.int64)),), args)
    except Exception as e:  # noqa: BLE001
        return Case("gpt2", what, args.gpt2_protocol, owners, hand, None, _short(e))

    def conv_forward(params, ids):
        return _logits(model.apply(params, ids))

    return Case(
        "gpt2", what, args.gpt2_protocol, owners, hand, Side(conv_forward, (model.params, ids))
    )


def _logits(out: Any) -> Any:
    if isinstance(out, dict):
        return out["logits"]
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def _short(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 400 else text[:400] + " ..."


# -- measuring ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Figures:
    jit_s: float
    spu_s: float
    spu_runs: list[float]
    send_bytes: int
    send_actions: int
    ops: dict[str, list[float]]  # op -> [executed, seconds, send bytes, send actions]
    static_ops: collections.Counter
    max_err: float  # SPU vs plaintext, same side


def plaintext_time(side: Side, runs: int) -> float:
    f = jax.jit(side.fn)
    jax.block_until_ready(f(*side.args))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*side.args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def parse_ops(log: str) -> dict[str, list[float]]:
    """Per-op totals (summed over parties) from SPU's pphlo profile lines."""
    ops: dict[str, list[float]] = {}
    for m in _OP_LINE.finditer(log):
        acc = ops.setdefault(m[1], [0, 0.0, 0, 0])
        acc[0] += int(m[2])
        acc[1] += float(m[3])
        acc[2] += int(m[4])
        acc[3] += int(m[5])
    return ops


def static_ops(side: Side) -> collections.Counter:
    """pphlo op histogram of the compiled program (all inputs secret)."""
    from ppml_torch.runners.compile import compile_for_spu

    prog = compile_for_spu(side.fn, side.args, "secret", ir="xla")
    return collections.Counter(re.findall(r"= (pphlo\.\w+)", prog.pphlo))


def spu_figures(case: Case, args: argparse.Namespace) -> tuple[Figures, Figures]:
    """Both sides in one SPU session, calls alternating (hand, converted, hand, ...).

    Alternating keeps drift of a shared machine from favouring either side.  Call 0 of each
    side compiles and is profiled (per-op figures, error against plaintext); the following
    ``--runs`` calls are timed.
    """
    from ppml_torch.runners import open_session
    from ppml_torch.runners.comm import SpuLogTap

    sides = (case.hand, case.conv)
    wants = [jax.jit(side.fn)(*side.args) for side in sides]
    runs: list[list[float]] = [[], []]
    ops: list[dict[str, list[float]]] = [{}, {}]
    comm: list[tuple[int, int] | None] = [None, None]
    errs = [0.0, 0.0]
    with open_session("spu", case.protocol, args.field) as s:
        tap = SpuLogTap.get()
        handles = [
            [s.put(a, owner=o) for a, o in zip(side.args, case.owners, strict=True)]
            for side in sides
        ]
        for i in range(args.runs + 1):
            for k, side in enumerate(sides):
                mark = tap.mark()
                out = s.call(side.fn, *handles[k], name=f"{case.name}")
                rep = s.last_report
                if i == 0:
                    ops[k] = parse_ops(tap.read_since(mark))
                    diff = jax.tree_util.tree_map(
                        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                        s.reveal(out),
                        wants[k],
                    )
                    errs[k] = max(jax.tree_util.tree_leaves(diff))
                else:
                    runs[k].append(rep.run_s)
                got = (rep.comm.send_bytes, rep.comm.send_actions)
                if comm[k] is not None and got != comm[k]:
                    print(
                        f"  note: {case.name} communication differs between runs", file=sys.stderr
                    )
                comm[k] = got
                s.free(out)
    return tuple(  # type: ignore[return-value]
        Figures(
            plaintext_time(side, args.jit_runs),
            statistics.median(runs[k]),
            runs[k],
            comm[k][0],
            comm[k][1],
            ops[k],
            static_ops(side),
            errs[k],
        )
        for k, side in enumerate(sides)
    )


# -- reporting ----------------------------------------------------------------------------------
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


def _mib(n: float) -> str:
    return f"{n / 2**20:.3f} MiB"


def report(case: Case, hand: Figures, conv: Figures, top: int, all_ops: bool = False) -> None:
    def ratio(a: float, b: float) -> float:
        return a / b if b else float("inf")

    r_jit = ratio(conv.jit_s, hand.jit_s)
    r_spu = ratio(conv.spu_s, hand.spu_s)
    r_comm = ratio(conv.send_bytes, hand.send_bytes)
    r_act = ratio(conv.send_actions, hand.send_actions)
    print(f"  {'':22}{'hand-written':>16}{'converted':>16}{'ratio':>9}  target")
    print(
        f"  {'plaintext jit':22}{hand.jit_s * 1e3:>14.3f}ms{conv.jit_s * 1e3:>14.3f}ms{r_jit:>9.2f}"
    )
    ok_t = "ok" if r_spu <= TARGET_SPU_TIME else "MISSED"
    print(
        f"  {'SPU run (median)':22}{hand.spu_s:>15.3f}s{conv.spu_s:>15.3f}s{r_spu:>9.2f}  "
        f"<= {TARGET_SPU_TIME:.2f} {ok_t}"
    )
    ok_c = "ok" if r_comm <= TARGET_COMM else "MISSED"
    print(
        f"  {'SPU send bytes':22}{_mib(hand.send_bytes):>16}{_mib(conv.send_bytes):>16}"
        f"{r_comm:>9.3f}  <= {TARGET_COMM:.2f} {ok_c}"
    )
    print(f"  {'SPU send actions':22}{hand.send_actions:>16}{conv.send_actions:>16}{r_act:>9.3f}")
    print(
        f"  {'SPU vs plaintext err':22}{hand.max_err:>16.2e}{conv.max_err:>16.2e}"
        f"   (runs: hand {_fmt(hand.spu_runs)}, converted {_fmt(conv.spu_runs)})"
    )

    # where the converted program does more work
    rows = []
    for op in sorted(set(hand.ops) | set(conv.ops)):
        h = hand.ops.get(op, [0, 0.0, 0, 0])
        c = conv.ops.get(op, [0, 0.0, 0, 0])
        hs, cs = hand.static_ops.get(op, 0), conv.static_ops.get(op, 0)
        more = c[2] > h[2] or c[3] > h[3] or cs > hs or c[1] > h[1] * 1.5 + 1e-3
        if more or (all_ops and (h[2] or c[2])):
            rows.append((c[2] - h[2], c[1] - h[1], op, hs, cs, h, c))
    rows.sort(reverse=True)
    if not rows:
        print("  no pphlo op costs more in the converted program")
        return
    title = "every communicating pphlo op" if all_ops else "pphlo ops costing more when converted"
    print(
        f"  {title} (h = hand-written, c = converted; static count in the program, times executed"
        " and sends summed over parties, time of the profiled call):"
    )
    print(
        f"    {'op':24}{'ops h/c':>10}{'exec h/c':>14}{'send bytes h -> c':>28}"
        f"{'actions h/c':>14}{'time h/c':>18}"
    )
    for _, _, op, hs, cs, h, c in rows[:top]:
        print(
            f"    {op:24}{f'{hs}/{cs}':>10}{f'{h[0]}/{c[0]}':>14}"
            f"{f'{h[2]} -> {c[2]}':>28}{f'{h[3]}/{c[3]}':>14}"
            f"{f'{h[1] * 1e3:.1f}/{c[1] * 1e3:.1f}ms':>18}"
        )
    fewer = [
        op
        for op in sorted(set(hand.static_ops) | set(conv.static_ops))
        if conv.static_ops.get(op, 0) < hand.static_ops.get(op, 0)
    ]
    if fewer:
        print(
            "  ops the converted program has fewer of: "
            + ", ".join(f"{op} {hand.static_ops[op]}/{conv.static_ops.get(op, 0)}" for op in fewer)
        )


def _fmt(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in xs) + "]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="mlp,gpt2", help="comma-separated: mlp, gpt2")
    p.add_argument("--runs", type=int, default=5, help="SPU runs per side (median reported)")
    p.add_argument("--jit-runs", type=int, default=50, help="plaintext runs per side")
    p.add_argument("--field", default="FM64")
    p.add_argument("--mlp-protocol", default="SEMI2K")
    p.add_argument("--gpt2-protocol", default="ABY3")
    p.add_argument("--batch", type=int, default=64, help="MLP batch size")
    p.add_argument("--gpt2-layers", type=int, default=2)
    p.add_argument("--gpt2-embd", type=int, default=64)
    p.add_argument("--gpt2-heads", type=int, default=4)
    p.add_argument("--gpt2-vocab", type=int, default=256)
    p.add_argument("--seq", type=int, default=8, help="GPT-2 tokens")
    p.add_argument(
        "--attn-implementation",
        default=None,
        help="torch GPT-2 attention: eager or sdpa (HF default)",
    )
    p.add_argument(
        "--index-lowering",
        choices=("auto", "take", "one_hot"),
        default="auto",
        help="convert's form of gathers on input indices (GPT-2's token ids)",
    )
    p.add_argument("--top", type=int, default=15, help="op rows to print per case")
    p.add_argument(
        "--all-ops", action="store_true", help="list every communicating op, not only costlier ones"
    )
    args = p.parse_args(argv)

    import spu
    import torch
    import transformers

    print(f"machine: {machine()}")
    print(
        f"versions: jax {jax.__version__}, spu {spu.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    builders = {"mlp": mlp_case, "gpt2": gpt2_case}
    status = 0
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if name not in builders:
            p.error(f"unknown case {name!r}; choose from {', '.join(builders)}")
        case = builders[name](args)
        n = {"ABY3": 3}.get(case.protocol.upper(), 2)
        print(f"\n== {case.name}: {case.what}; SPU {case.protocol} {args.field}, {n} parties ==")
        if case.conv is None:
            print(f"  converted side unavailable: {case.conv_error}")
            status = 1
            continue
        diff = jax.tree_util.tree_map(
            lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
            case.conv_to_hand(case.conv.fn(*case.conv.args)),
            case.hand.fn(*case.hand.args),
        )
        print(
            f"  plaintext converted vs hand-written: max abs diff "
            f"{max(jax.tree_util.tree_leaves(diff)):.2e}"
        )
        hand, conv = spu_figures(case, args)
        report(case, hand, conv, args.top, args.all_ops)
    return status


if __name__ == "__main__":
    sys.exit(main())
