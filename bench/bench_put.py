"""Sharing GPT-2-small-shaped weights: ``put``'s ways side by side.

    .venv/bin/python bench/bench_put.py                  # 124M weights, ABY3 FM64, ~2-3 min
    .venv/bin/python bench/bench_put.py --scale 0.1      # a tenth of every leaf (smoke test)
    .venv/bin/python bench/bench_put.py --ways built spu # two of the ways

Each way runs in its own process (glibc's malloc settings and the peak RSS are per process),
alternating over ``--repeats``.  ``built`` is ``put`` now: shares built with numpy
(``runners/shares.py``) in 1M-element pieces joined inside SPU; ``spu`` the same pieces
split by SPU's ``make_shares`` (``put`` before); ``whole`` one ``make_shares`` per leaf with
glibc's default malloc settings (``put`` before pieces).  Seeded random weights of
GPT-2-small's leaf shapes (12 layers, 768 wide, vocabulary 50,257, 1,024 positions), one
``put`` by alice in an in-process ``spu`` session; the values revealed afterwards are
checked to be the same in both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAYS = ("built", "spu", "whole")


def shapes(layers: int = 12, width: int = 768, vocab: int = 50257, positions: int = 1024):
    out = {"wte": (vocab, width), "wpe": (positions, width), "ln_f": (2, width)}
    for i in range(layers):
        out |= {
            f"h{i}.ln": (4, width),
            f"h{i}.c_attn": (width, 3 * width),
            f"h{i}.c_attn_b": (3 * width,),
            f"h{i}.attn_proj": (width, width),
            f"h{i}.fc": (width, 4 * width),
            f"h{i}.fc_b": (4 * width,),
            f"h{i}.mlp_proj": (4 * width, width),
            f"h{i}.b": (2, width),
        }
    return out


def child(way: str, run: str, scale: float) -> None:
    import numpy as np

    import ppml_torch.runners.spu as spu_runner
    from ppml_torch.runners.runspec import parse_run

    if way in ("spu", "whole"):
        spu_runner.BUILD_SHARES = False
    if way == "whole":
        spu_runner.PUT_PIECE = 1 << 62
        spu_runner._MALLOC_TUNED = True  # glibc's defaults stay
    rng = np.random.default_rng(0)
    weights = {
        k: rng.normal(0, 0.02, size=tuple(max(1, int(d * scale)) if j == 0 else d
                                          for j, d in enumerate(s))).astype(np.float32)
        for k, s in shapes().items()
    }  # fmt: skip
    n = sum(w.size for w in weights.values())
    session = parse_run(run).open()
    t0 = time.perf_counter()
    h = session.put(weights, owner="alice")
    put_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    back = session.reveal(h, to="alice")
    digest = float(sum(np.abs(back[k].astype(np.float64)).sum() for k in sorted(back)))
    err = max(float(np.abs(back[k] - weights[k]).max()) for k in weights)
    session.close()
    print("RESULT " + json.dumps({"n": n, "put_s": put_s, "rss_mib": rss, "digest": digest,
                                  "err": err}))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=WAYS)
    p.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    p.add_argument("--run", default="spu:ABY3:FM64")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of each leaf's rows")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.run, a.scale)
        return 0
    root = os.path.dirname(HERE)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": root}
    res: dict[str, list[dict]] = {w: [] for w in a.ways}
    for _ in range(a.repeats):
        for way in res:
            cmd = [sys.executable, __file__, "--child", way, "--run", a.run, "--scale",
                   str(a.scale)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"{way} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            res[way].append(json.loads(line[0][7:]))
    n = res[a.ways[0]][0]["n"]
    load = os.getloadavg()[0]
    print(f"{a.run}, {n / 1e6:.1f}M weights (GPT-2-small leaf shapes x {a.scale}), put by alice; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {load:.1f}; {a.repeats} repeats, alternating, each in its own process")  # fmt: skip
    print(f"{'way':<8} {'put (median)':>13} {'all runs':>24} {'peak RSS':>10} {'max |err|':>10}")
    for way, rs in res.items():
        times = " ".join(f"{r['put_s']:.1f}" for r in rs)
        print(f"{way:<8} {statistics.median(r['put_s'] for r in rs):>12.2f}s {times:>24} "
              f"{max(r['rss_mib'] for r in rs) / 1024:>9.2f}G "
              f"{max(r['err'] for r in rs):>10.2e}")  # fmt: skip
    same = len({round(r["digest"], 3) for rs in res.values() for r in rs}) == 1
    first = statistics.median(r["put_s"] for r in res[a.ways[0]])
    ratios = ", ".join(
        f"{w} / {a.ways[0]}: {statistics.median(r['put_s'] for r in res[w]) / first:.2f}x"
        for w in a.ways[1:]
    )
    print(f"{ratios}; revealed values the same: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
