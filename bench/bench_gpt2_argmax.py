"""What the greedy argmax over the vocabulary costs in a cached GPT-2 decode step under MPC.

    .venv/bin/python bench/bench_gpt2_argmax.py [--vocab 512 50257] [--repeats 3]

For each vocabulary size, a tiny seeded random nanoGPT (``--layers``/``--width``/``--heads``)
and, in ONE session (default spu:ABY3:FM64), alternating over ``--repeats``:

* ``step+argmax``: the decode step with SPU's ``jnp.argmax`` (logits -> argmax, secret);
* ``step``: the same decode step returning the (secret) logits, no argmax;
* ``argmax``: SPU's ``jnp.argmax`` alone on a secret ``(1, vocab)`` vector;
* ``first_argmax``: ``ppml_torch.generation.ops.first_argmax`` (``argmax="first"``: the same
  index, ties to the first, from a max and two element-wise comparisons) alone on it;
* ``tree_argmax``: ``ppml_torch.generation.ops.tree_argmax`` (``argmax="tree"``: the same
  index, a knockout tournament carrying the index) alone on it;
* ``max``: ``jnp.max`` alone on it (the comparisons an argmax needs at least).

Median run time (compilation excluded) and bytes sent per call; the argmax's share of a step
is ``(step+argmax - step) / step+argmax``.  Tiny model shapes only: do not pass GPT-2-small.
"""

from __future__ import annotations

import argparse
import statistics


def main(argv: list[str] | None = None) -> int:
    import jax.numpy as jnp
    import numpy as np
    import torch

    from ppml_torch.generation.programs import build
    from ppml_torch.models.nanogpt import GPT, GPTConfig
    from ppml_torch.runners.runspec import parse_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, nargs="+", default=[512, 50257])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=7)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run", default="spu:ABY3:FM64")
    p.add_argument("--route", choices=("graph", "flax"), default="flax")
    args = p.parse_args(argv)
    spec = parse_run(args.run)

    def am(logits):
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    from ppml_torch.generation.ops import first_argmax, tree_argmax

    def mx(logits):
        return jnp.max(logits, axis=-1)

    print(
        f"{spec}, {args.route} route, nanoGPT {args.layers} layers x {args.width} wide, "
        f"{args.heads} heads, prompt {args.prompt_len}; median of {args.repeats} runs"
    )
    head = f"{'vocab':>6} {'call':<13} {'run':>8} {'sent':>12} {'sends':>7}"
    print(head)
    print("-" * len(head))
    with spec.open() as s:
        for V in args.vocab:
            torch.manual_seed(0)
            gpt = GPT(
                GPTConfig(
                    block_size=64,
                    vocab_size=V,
                    n_layer=args.layers,
                    n_head=args.heads,
                    n_embd=args.width,
                )
            ).eval()
            T = args.prompt_len
            progs = build(gpt, args.route, 1, T, T + 1)

            def step(params, idx, kc, vc, pos, progs=progs):
                return progs.decode(params, idx, kc, vc, pos)

            def step_argmax(params, idx, kc, vc, pos, progs=progs):
                logits, kc, vc = progs.decode(params, idx, kc, vc, pos)
                return am(logits), kc, vc

            rng = np.random.default_rng(0)
            w = s.put(progs.params, owner="alice")
            idx = s.put(np.array([[1]], np.int32), owner="bob")
            kc = s.put(rng.normal(0, 1, progs.cache_shape).astype(np.float32), owner="bob")
            vc = s.put(rng.normal(0, 1, progs.cache_shape).astype(np.float32), owner="bob")
            pos = s.put(np.int32(T), owner="public")
            x = s.put(rng.normal(0, 1, (1, V)).astype(np.float32), owner="alice")
            calls = {
                "step+argmax": (step_argmax, (w, idx, kc, vc, pos)),
                "step": (step, (w, idx, kc, vc, pos)),
                "argmax": (am, (x,)),
                "first_argmax": (first_argmax, (x,)),
                "tree_argmax": (tree_argmax, (x,)),
                "max": (mx, (x,)),
            }
            seen: dict[str, list] = {k: [] for k in calls}
            for _ in range(args.repeats + 1):  # the first round compiles
                for name, (fn, hs) in calls.items():
                    out = s.call(fn, *hs, name=name)
                    seen[name].append(s.last_report)
                    s.free(out)
            med = {}
            for name, reps in seen.items():
                runs = reps[1:]
                med[name] = statistics.median(r.run_s for r in runs)
                c = runs[-1].comm
                sent = f"{c.send_bytes / 2**20:.2f} MiB" if c else "-"
                sends = str(c.send_actions) if c else "-"
                print(f"{V:>6} {name:<13} {med[name]:>7.3f}s {sent:>12} {sends:>7}")
            full, bare = seen["step+argmax"][-1].comm, seen["step"][-1].comm
            if full and bare:
                share_b = (full.send_bytes - bare.send_bytes) / full.send_bytes
                share_t = (med["step+argmax"] - med["step"]) / med["step+argmax"]
                print(
                    f"{V:>6} argmax share of a step: {share_b:.0%} of bytes, {share_t:.0%} of time"
                )
            for h in (w, idx, kc, vc, pos, x):
                s.free(h)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
