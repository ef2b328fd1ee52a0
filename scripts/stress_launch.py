"""Launch the multi-process jobs again and again with every CPU kept busy: every party must exit 0.

A party that crashes at exit (a native thread still running while C++ static destructors run)
fails one launch in a few on a loaded machine and passes on an idle one, so this script loads
the machine on purpose: one busy-looping process per CPU, at the parties' own priority.  It
cycles through three launches (the 2- and 3-party homework, and 3-party GPT-2 generation on a
random 2-layer model) and prints one line per launch; a failed launch's whole output is kept
in the output folder.  Every launch must also leave nothing in the temporary folder: the
launches run with one of their own (``TMPDIR``, so that what other programs write to /tmp
meanwhile does not count), and a ``ppml-torch-*`` entry (or a ``ray`` folder) left there is a
failure.  Exit code 1 if any launch failed.

    .venv/bin/python scripts/stress_launch.py --launches 24        # about 15 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

KINDS = {
    "homework-2": ["--parties", "alice,bob", "--", "homework-mlp", "--runs", "secretflow:SEMI2K",
                   "--epochs", "2"],
    "homework-3": ["--parties", "alice,bob,carol", "--", "homework-mlp", "--runs",
                   "secretflow:ABY3", "--epochs", "2"],
    "gpt2-3": ["--parties", "alice,bob,carol", "--", "gpt2", "--runs", "secretflow:ABY3",
               "--tokens", "3", "--layers", "2", "--width", "64", "--heads", "4"],
}  # fmt: skip
ORDER = ("homework-3", "gpt2-3", "homework-2")  # two three-party launches in every three


def left_behind(tmp: str) -> set[str]:
    """What ppml-torch (and Ray) would leave in the temporary folder ``tmp``."""
    return {n for n in os.listdir(tmp) if n.startswith(("ppml-torch-", "ray"))}


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes that spin forever (killed by the caller)."""
    return [subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"]) for _ in range(n)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--launches", type=int, default=24, help="launches in all (default 24)")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(ORDER))
    p.add_argument(
        "--busy", type=int, default=os.cpu_count() or 1, help="busy loops (default: one per CPU)"
    )
    p.add_argument(
        "--out", help="folder for the outputs of failed launches (default: a temporary one)"
    )
    args = p.parse_args()

    out = args.out or tempfile.mkdtemp(prefix="stress-launch-")
    os.makedirs(out, exist_ok=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="stress-launch-tmp-")
    env = dict(os.environ, PYTHONPATH=root, PYTHONUNBUFFERED="1", TMPDIR=tmp)
    loops = busy_loops(args.busy)
    failed: list[str] = []
    counts: dict[str, int] = {}
    print(f"{args.launches} launches, {args.busy} busy loops on {os.cpu_count()} CPUs")
    try:
        for i in range(args.launches):
            kind = args.kinds[i % len(args.kinds)]
            counts[kind] = counts.get(kind, 0) + 1
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "ppml_torch", "launch", *KINDS[kind]]
            res = subprocess.run(
                cmd, capture_output=True, text=True, env=env, cwd=root, timeout=900
            )
            last = (res.stdout.strip().splitlines() or [""])[-1]
            time.sleep(2)  # the parties' janitors remove their folders a moment after they end
            left = sorted(left_behind(tmp))
            if left:
                last += f"; left in TMPDIR: {', '.join(left)}"
                for n in left:
                    shutil.move(os.path.join(tmp, n), os.path.join(out, f"{i + 1}-{n}"))
            ok = res.returncode == 0 and not left
            print(
                f"{i + 1:3d} {kind:<11} {'ok  ' if ok else 'FAIL'} {time.perf_counter() - t0:5.1f}s  {last}",
                flush=True,
            )
            if not ok:
                path = os.path.join(out, f"launch-{i + 1}-{kind}.txt")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(res.stdout + res.stderr)
                failed.append(path)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = ", ".join(f"{k} {n}" for k, n in counts.items())
    print(f"{args.launches - len(failed)} of {args.launches} launches exited 0 ({summary})")
    if failed:
        print("outputs of the failed launches: " + ", ".join(failed))
        return 1
    if not args.out:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
