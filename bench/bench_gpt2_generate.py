"""Greedy GPT-2 generation under MPC: the KV-cache decoder vs the simple approach, side by side.

    .venv/bin/python bench/bench_gpt2_generate.py [--layers 2 --width 64 --heads 4 --vocab 512]
        [--prompt-len 7] [--tokens 10] [--repeats 2] [--run spu:ABY3:FM64] [--route flax]

Each approach runs in its OWN process (so peak RSS is its own), one process at a time,
alternating over ``--repeats`` so that drift on a shared machine favours neither:

* ``cached``: ``ppml_torch.generation.Decoder``: weights put once, a prompt step, then one
  compiled decode step per token (KV cache secret, position public, argmax under MPC);
* ``simple``: the homework's way: one SPU program that re-runs the whole sequence for every
  new token (unrolled loop, argmax under MPC), weights and prompt put once per run.

Both use the same seeded random HF GPT-2 (its weights in the Flax/converted nanoGPT) and must
give the same ids.  Figures: weights put, prompt step (cached), median time per further token
(cached), compile, total wall for all tokens including compile and put, bytes sent, peak RSS.

Do not run GPT-2-small shapes (12 x 768, vocabulary 50257) on a shared machine: they need
10-20 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _model(a):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=a.layers,
        n_embd=a.width,
        n_head=a.heads,
        vocab_size=a.vocab,
        n_positions=max(64, a.prompt_len + a.tokens),
        initializer_range=0.1,
    )
    return GPT2LMHeadModel(cfg).eval()


def child(a) -> dict:
    import resource

    import numpy as np

    from ppml_torch.runners.runspec import parse_run

    model = _model(a)
    prompt = np.random.RandomState(0).randint(0, a.vocab, (1, a.prompt_len)).astype(np.int32)
    out: dict = {"approach": a.child}
    with parse_run(a.run).open() as s:
        if a.child == "cached":
            from ppml_torch.generation import Decoder

            t0 = time.perf_counter()
            dec = Decoder(
                model,
                s,
                prompt_len=a.prompt_len,
                max_new_tokens=a.tokens,
                route=a.route,
                approx=getattr(a, "approx", False),
                argmax=a.argmax,
            )
            out["prepare_s"] = time.perf_counter() - t0
            g = dec.generate(prompt)
            out.update(
                ids=g.ids[0].tolist(),
                put_s=g.weights_put.run_s,
                prompt_s=g.prefill.run_s,
                token_s=g.step_s,
                compile_s=g.compile_s,
                total_s=g.wall_s,
                sent=g.comm.send_bytes if g.comm else None,
            )
        else:
            import jax.numpy as jnp

            from ppml_torch.generation import as_nanogpt
            from ppml_torch.runners import total

            t0 = time.perf_counter()
            fm = __import__("ppml_torch").to_flax(as_nanogpt(model))
            out["prepare_s"] = time.perf_counter() - t0
            n = a.tokens

            def simple(params, ids):
                new = []
                for _ in range(n):  # the whole sequence again for every token
                    logits = fm.apply(params, ids)[:, -1]  # (B, V)
                    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)[:, None]
                    new.append(nxt)
                    ids = jnp.concatenate([ids, nxt], axis=1)
                return jnp.concatenate(new, axis=1)

            first = len(s.reports)
            t0 = time.perf_counter()
            w = s.put(fm.params, owner="alice")
            x = s.put(prompt, owner="bob")
            h = s.call(simple, w, x, name="simple")
            ids = np.asarray(s.reveal(h, to="bob"))
            wall = time.perf_counter() - t0
            rep = total(s.reports[first:])
            out.update(
                ids=ids[0].tolist(),
                put_s=s.reports[first].run_s,
                prompt_s=None,
                token_s=None,
                compile_s=rep.compile_s,
                total_s=wall,
                sent=rep.comm.send_bytes if rep.comm else None,
            )
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=7)
    p.add_argument("--tokens", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--run", default="spu:ABY3:FM64")
    p.add_argument("--route", choices=("graph", "flax"), default="flax")
    p.add_argument(
        "--argmax", choices=("tree", "spu", "first"), default="tree", help="cached's argmax"
    )
    p.add_argument(
        "--approaches", nargs="+", choices=("cached", "simple"), default=["cached", "simple"]
    )
    p.add_argument("--child", choices=("cached", "simple"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(a)), flush=True)
        return 0
    if a.layers * a.width >= 12 * 768 or (a.width >= 768 and a.vocab >= 50257):
        print("refusing a GPT-2-small-sized run here; see the docstring", file=sys.stderr)
        return 2

    base = [sys.executable, os.path.abspath(__file__)]
    for k in (
        "layers",
        "width",
        "heads",
        "vocab",
        "prompt_len",
        "tokens",
        "run",
        "route",
        "argmax",
    ):
        base += [f"--{k.replace('_', '-')}", str(getattr(a, k))]
    print(
        f"{a.run}, GPT-2 {a.layers} layers x {a.width} wide, {a.heads} heads, vocabulary "
        f"{a.vocab} (seeded random), prompt {a.prompt_len}, {a.tokens} new tokens; "
        f"{a.repeats} repeats, each approach in its own process, alternating"
    )
    results: dict[str, list[dict]] = {k: [] for k in a.approaches}
    for _ in range(a.repeats):
        for name in a.approaches:
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout
            env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": root}
            proc = subprocess.run(
                [*base, "--child", name], capture_output=True, text=True, env=env, check=False
            )
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            results[name].append(json.loads(line[0][7:]))

    def med(name: str, key: str):
        vals = [r[key] for r in results[name] if r[key] is not None]
        return statistics.median(vals) if vals else None

    def f(v, unit="s"):
        return "-" if v is None else f"{v:.2f}{unit}"

    head = (
        f"{'approach':<8} {'put':>7} {'prompt':>7} {'token':>7} {'compile':>8} {'total':>8} "
        f"{'sent':>11} {'peak RSS':>10}"
    )
    print(head)
    print("-" * len(head))
    for name in a.approaches:
        sent = med(name, "sent")
        print(
            f"{name:<8} {f(med(name, 'put_s')):>7} {f(med(name, 'prompt_s')):>7} "
            f"{f(med(name, 'token_s')):>7} {f(med(name, 'compile_s')):>8} "
            f"{f(med(name, 'total_s')):>8} "
            f"{'-' if sent is None else f'{sent / 2**20:.1f} MiB':>11} "
            f"{f(med(name, 'peak_rss_mib'), ' MiB'):>10}"
        )
    if len(results) == 2:
        ids = {k: v[0]["ids"] for k, v in results.items()}
        same = ids["cached"] == ids["simple"]
        ratio = med("simple", "total_s") / med("cached", "total_s")
        print(f"same ids: {'yes' if same else 'NO'} {ids['cached']}")
        print(f"simple / cached, total for {a.tokens} tokens (medians): {ratio:.2f}x")
    print(
        "put: weights shared; prompt: the cached prompt step; token: median per further token; "
        "total: put + compile + all steps + reveal (conversion not included); medians"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
