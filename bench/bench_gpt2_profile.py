"""Where the time and bytes of one cached GPT-2 decode step go under MPC: SPU's per-op profile.

    .venv/bin/python bench/bench_gpt2_profile.py [--route flax] [--approx] [--argmax spu]
        [--candidates K]
        [--layers 2 --width 128 --heads 4 --vocab 50257] [--run spu:ABY3:FM64]

A seeded random nanoGPT, one decode step at position 7 with the greedy argmax (what
``ppml_torch.generate`` runs per token), compiled once, then run once more with the SPU log
tapped (``enable_pphlo_profile`` is on in sessions; ``runners.comm.SpuLogTap``).  Prints the
step's run time and bytes (all parties), then the 12 dearest pphlo ops by time (the
slowest party's) with the bytes all parties sent in them.  ``--argmax``: which greedy argmax
(``generate``'s ``argmax=``: ``tree``, the default; ``spu``, SPU's own ``jnp.argmax``;
``first``).  ``--candidates K``: the argmax over K evenly spaced token ids (``generate``'s
``candidates=``; the cost of the trained model's 5,170).
"""

from __future__ import annotations

import argparse
import re


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from ppml_torch.generation.checks import check_candidates
    from ppml_torch.generation.ops import ARGMAXES, greedy_argmax
    from ppml_torch.generation.programs import build
    from ppml_torch.models.nanogpt import GPT, GPTConfig
    from ppml_torch.runners.comm import SpuLogTap
    from ppml_torch.runners.runspec import parse_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--route", choices=("graph", "flax"), default="flax")
    p.add_argument("--approx", action="store_true")
    p.add_argument("--argmax", choices=ARGMAXES, default="tree")
    p.add_argument("--candidates", type=int, default=0, help="K evenly spaced token ids")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--run", default="spu:ABY3:FM64")
    a = p.parse_args(argv)
    if a.layers * a.width >= 12 * 768:
        raise SystemExit("refusing a GPT-2-small-sized profile here (10-20 GB)")

    torch.manual_seed(0)
    cfg = GPTConfig(block_size=64, vocab_size=a.vocab, n_layer=a.layers, n_head=a.heads,
                    n_embd=a.width)  # fmt: skip
    T = 7
    progs = build(GPT(cfg).eval(), a.route, 1, T, T + 3, a.approx)
    how = a.argmax

    cand = None
    if a.candidates:
        cand = np.linspace(0, a.vocab - 1, a.candidates).round().astype(np.int32)
        check_candidates(cand, a.vocab, how)

    def step(params, idx, kc, vc, pos):
        logits, kc, vc = progs.decode(params, idx, kc, vc, pos)
        if cand is not None:
            from ppml_torch.generation.ops import tree_argmax

            return tree_argmax(logits[:, cand], ids=cand), kc, vc
        return greedy_argmax(logits, how), kc, vc

    with parse_run(a.run).open() as s:
        rng = np.random.default_rng(0)
        w = s.put(progs.params, owner="alice")
        idx = s.put(np.array([[1]], np.int32), owner="bob")
        kc = s.put(rng.normal(0, 1, progs.cache_shape).astype(np.float32), owner="bob")
        vc = s.put(rng.normal(0, 1, progs.cache_shape).astype(np.float32), owner="bob")
        pos = s.put(np.int32(T), owner="public")
        s.free(s.call(step, w, idx, kc, vc, pos, name="decode_step"))  # compiles
        tap = SpuLogTap.get()
        mark = tap.mark()
        s.free(s.call(step, w, idx, kc, vc, pos, name="decode_step"))
        rep = s.last_report
        text = tap.read_since(mark)
    comm = rep.comm
    print(
        f"{a.run}, {a.route} route, {a.layers}x{a.width}, vocab {a.vocab}, approx {a.approx}, "
        f"argmax {a.argmax}{f' over {a.candidates} candidates' if cand is not None else ''}: "
        f"decode step {rep.run_s:.3f}s, "
        f"{comm.send_bytes / 2**20 if comm else float('nan'):.2f} MiB sent (all parties)"
    )
    ops: dict[str, list] = {}  # op -> [calls, max time over parties, bytes sent by all]
    for line in text.splitlines():
        m = re.search(r"- pphlo\.([^,]+), executed (\d+) times, duration ([\d.e+-]+)s, "
                      r"send bytes (\d+)", line)  # fmt: skip
        if m:  # the parties' profiles interleave: merge them
            o = ops.setdefault(m[1], [int(m[2]), 0.0, 0])
            o[1] = max(o[1], float(m[3]))
            o[2] += int(m[4])
    total_t = sum(o[1] for o in ops.values()) or 1.0
    total_b = sum(o[2] for o in ops.values()) or 1
    print(f"{'op':<28} {'calls':>5} {'time':>8} {'share':>6} {'sent (all)':>12} {'share':>6}")
    for name, (n, t, b) in sorted(ops.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"{name:<28} {n:>5} {t:>7.3f}s {t / total_t:>6.0%} {b / 2**20:>8.2f} MiB "
              f"{b / total_b:>6.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
