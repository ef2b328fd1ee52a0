"""GPT-2 generation as one process per party (issue 21, item 5): per-party peak memory and times.

    .venv/bin/python bench/bench_gpt2_launch.py [--layers 12 --width 768 --heads 12]
        [--runs secretflow:ABY3] [--route graph] [--tokens 10]

Runs ``ppml-torch launch --parties alice,bob,carol -- gpt2 --layers L --width W --heads H
--runs secretflow:ABY3 --route R --tokens N`` and, every 0.2 s while it runs, reads the
proportional memory (``/proc/PID/smaps_rollup`` Pss: shared pages split between the processes
sharing them, so forked workers are not counted twice) of each party's process and everything
it started (SecretFlow's workers included): the peak of that sum is the party's peak memory;
also the peak resident memory (VmRSS) of the party's own process.  Prints each
party's peak next to what the parties print themselves (share, prompt step = time to first
token, median per further token, bytes sent).  The LAN/WAN estimate of a decode step comes
from ``ppml-torch profile --gpt2`` (same shape, ``spu:ABY3``): see bench/README.md.

GPT-2-small (12 x 768) needs about 3x one party's memory: check ``free -g`` first.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTIES = ("alice", "bob", "carol")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _kib(pid: int, path: str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kib(pid: int) -> int:
    return _kib(pid, "status", "VmRSS:")


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between their processes (sums honestly)."""
    return _kib(pid, "smaps_rollup", "Pss:")


def _party_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return None
    for i, a in enumerate(args[:-1]):
        if a == b"--party":
            return args[i + 1].decode()
    return None


def _tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--runs", default="secretflow:ABY3")
    p.add_argument("--route", default="graph", choices=("graph", "flax"))
    p.add_argument("--tokens", type=int, default=10)
    a = p.parse_args(argv)
    cmd = [sys.executable, "-m", "ppml_torch", "launch", "--parties", ",".join(PARTIES)]
    cmd += ["--timeout", "600", "--", "gpt2", "--layers", str(a.layers), "--width", str(a.width)]
    cmd += ["--heads", str(a.heads), "--runs", a.runs, "--route", a.route]
    cmd += ["--tokens", str(a.tokens)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": ROOT}
    print("$ ppml-torch " + " ".join(cmd[3:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    peak = dict.fromkeys(PARTIES, 0)  # the party's process tree, PSS summed
    peak_main = dict.fromkeys(PARTIES, 0)  # the party's own process, RSS
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            kids = _children()
            for pid in _tree(proc.pid, kids):
                party = _party_of(pid)
                if party in peak:
                    pss = sum(_pss_kib(q) for q in _tree(pid, kids))
                    peak[party] = max(peak[party], pss)
                    peak_main[party] = max(peak_main[party], _rss_kib(pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = proc.stdout.read() if proc.stdout else ""
    rc = proc.wait()
    done.set()
    watcher.join()
    wall = time.perf_counter() - t0
    keep = re.compile(r"secretflow:|start-up|ids \[|launch:")
    for line in out.splitlines():
        if keep.search(line):
            print("  " + line)
    if rc:
        print(out[-4000:])
        print(f"launch failed (exit {rc})")
        return 1
    print(f"launch wall {wall:.1f}s (start-up included); per-party peak memory:")
    for party in PARTIES:
        print(
            f"  {party}: {peak[party] / 2**20:.2f} GiB (its process tree, PSS), "
            f"{peak_main[party] / 2**20:.2f} GiB (its own process, RSS)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
