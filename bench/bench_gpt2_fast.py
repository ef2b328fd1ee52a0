"""GPT-2 cached generation before and after (issue 21, item 4): two checkouts side by side.

    .venv/bin/python bench/bench_gpt2_fast.py --base /work/main [--routes flax graph]
        [--layers 12 --width 768 --heads 12 --vocab 50257] [--repeats 1]

Runs ``bench_gpt2_generate.py --child cached`` (one ``Decoder``: weights put once, a prompt
step, then one decode step per token; ABY3 FM64, 7-token prompt, 10 new tokens) from the
``--base`` checkout and from this one, each in its OWN process (peak RSS is its own), one
process at a time, alternating base/this per route and repeat so that drift on a shared
machine favours neither.  Prints, per route and checkout, the time to share the weights, the
prompt step, the median time per further token, the total end to end (put + compile + steps +
reveal), bytes sent and peak RSS, then this/base ratios and the issue's targets.

Ids: both checkouts run the same seeded random HF GPT-2; torch's greedy ids and, per step,
torch's top-1 margin are printed next to each checkout's MPC ids (a step whose margin is tiny
is a near-tie: the fixed-point logits may pick the other token; see tests/generation).

GPT-2-small needs up to ~11 GiB per process: check ``free -g`` first; one process at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGETS = {"put_s": 10.0, "prompt_s": 6.0, "token_s": 0.7, "total_s": 25.0, "peak_gib": 7.5}
KEYS = ("put_s", "prompt_s", "token_s", "total_s", "sent_gb", "peak_gib")


def _child(a, checkout: str, route: str) -> dict:
    script = os.path.join(checkout, "bench", "bench_gpt2_generate.py")
    cmd = [sys.executable, script, "--child", "cached", "--route", route, "--run", a.run]
    cmd += ["--layers", str(a.layers), "--width", str(a.width), "--heads", str(a.heads)]
    cmd += ["--vocab", str(a.vocab), "--prompt-len", str(a.prompt_len)]
    cmd += ["--tokens", str(a.tokens)]
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": checkout,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"{checkout} {route} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(line[0][7:])
    r["sent_gb"] = (r["sent"] or 0) / 1e9
    r["peak_gib"] = r["peak_rss_mib"] / 1024
    return r


def _torch_ids(a) -> tuple[list[int], list[float]]:
    """Torch's greedy ids for the children's model and prompt, and torch's top-1 margin per step."""
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    from bench_gpt2_generate import _model

    model = _model(a)
    ids = torch.tensor(
        np.random.RandomState(0).randint(0, a.vocab, (1, a.prompt_len)).astype(np.int64)
    )
    out, margins = [], []
    with torch.no_grad():
        for _ in range(a.tokens):
            logits = model(ids).logits[0, -1]
            top2 = torch.topk(logits, 2).values
            margins.append(float(top2[0] - top2[1]))
            nxt = int(logits.argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out, margins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the checkout to compare with (e.g. main's)")
    p.add_argument("--routes", nargs="+", choices=("flax", "graph"), default=["flax", "graph"])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--prompt-len", type=int, default=7)
    p.add_argument("--tokens", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--run", default="spu:ABY3:FM64")
    a = p.parse_args(argv)
    base = os.path.abspath(a.base)
    print(
        f"{a.run}, GPT-2 {a.layers} layers x {a.width} wide, {a.heads} heads, vocabulary "
        f"{a.vocab} (seeded random), prompt {a.prompt_len}, {a.tokens} new tokens; base = {base}, "
        f"this = {ROOT}; {a.repeats} repeat(s), one process at a time, alternating",
        flush=True,
    )
    want, margins = _torch_ids(a)
    print(f"torch ids {want}; top-1 margins {[round(m, 3) for m in margins]}", flush=True)
    res: dict[tuple[str, str], list[dict]] = {}
    for _ in range(a.repeats):
        for route in a.routes:
            for name, checkout in (("base", base), ("this", ROOT)):
                r = _child(a, checkout, route)
                res.setdefault((route, name), []).append(r)
                print(
                    f"  {route} {name}: " + ", ".join(f"{k} {r[k]:.2f}" for k in KEYS), flush=True
                )

    def med(route: str, name: str, key: str) -> float:
        return statistics.median(r[key] for r in res[(route, name)])

    head = (
        f"{'route':<6} {'checkout':<8} {'put':>7} {'prompt':>7} {'token':>7} {'total':>7} "
        f"{'sent':>8} {'peak':>9}  ids equal torch"
    )
    print(head)
    print("-" * len(head))
    for route in a.routes:
        for name in ("base", "this"):
            ids = res[(route, name)][0]["ids"]
            diff = [i for i, (x, y) in enumerate(zip(ids, want, strict=True)) if x != y]
            same = "yes" if not diff else f"from step {diff[0]} (margin {margins[diff[0]]:.3f})"
            print(
                f"{route:<6} {name:<8} {med(route, name, 'put_s'):>6.2f}s "
                f"{med(route, name, 'prompt_s'):>6.2f}s {med(route, name, 'token_s'):>6.2f}s "
                f"{med(route, name, 'total_s'):>6.2f}s {med(route, name, 'sent_gb'):>6.2f}GB "
                f"{med(route, name, 'peak_gib'):>6.2f}GiB  {same}"
            )
        ratio = "  ".join(f"{k} {med(route, 'base', k) / med(route, 'this', k):.2f}x" for k in KEYS)
        print(f"{route:<6} base/this: {ratio}")
    print(
        "targets (this): "
        + ", ".join(f"{k} <= {v}" for k, v in TARGETS.items())
        + "; medians; put: weights shared, prompt: the prompt step, token: median per further "
        "token, total: put + compile + all steps + reveal (conversion not included)"
    )
    for route in a.routes:
        miss = [k for k, v in TARGETS.items() if med(route, "this", k) > v]
        print(f"{route}: targets missed: {', '.join(miss) if miss else 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
