"""Training the digits CNN under MPC (issue 20, item 6), next to CrypTen's figures.

    .venv/bin/python bench/bench_digits.py                      # spu:SEMI2K, 3 epochs, 1 process
    .venv/bin/python bench/bench_digits.py --two-processes      # and one process per party
    .venv/bin/python bench/bench_digits.py --epochs 1 --two-processes

The model, data and settings of ``ppml-torch digits`` (``ppml_torch/apps/digits/``): sklearn's
digits, 1,437 training images split between alice and bob, SGD 0.3, batch 32, by
``ppml_torch.fit``.  Rows: ``spu:SEMI2K`` in one process (SPU's runtime, in-memory links:
bytes and sends are all parties' together), and with ``--two-processes`` ``secretflow:SEMI2K``
with one process per party on loopback (``ppml-torch launch``: each party's own figures).
Per epoch: run time of the epoch's one program call, bytes and sends; accuracy on the 360
test images against torch eager's.

CrypTen 0.4.1 on this machine (issue 20; two processes, 3 epochs): 58-64 s per epoch,
6.78 GB sent in all, 42,255 rounds per party, accuracy 0.90.  Ratios use 58 s (its best).
Figures: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CRYPTEN = {"epoch_s": 58.0, "GB_3_epochs": 6.78, "rounds_3_epochs": 42255, "acc": 0.90}


def in_process(epochs: int) -> None:
    from ppml_torch.apps.digits import train
    from ppml_torch.apps.digits.data import load_data
    from ppml_torch.runners import open_session

    data = load_data()
    ref = train.accuracy(train.torch_eager(data, epochs=epochs), data)
    with open_session("spu", "SEMI2K", "FM64") as s:
        module, history = train.train(s, data, epochs=epochs)
    acc = train.accuracy(module, data)
    for e in history.epochs:
        gb = e.comm.send_bytes / 1e9
        print(
            f"spu:SEMI2K 1 process   epoch {e.epoch}: run {e.run_s:6.1f}s (compile "
            f"{e.compile_s:.1f}s)  {gb:.2f} GB in {e.comm.send_actions} sends (all parties)  "
            f"vs CrypTen {CRYPTEN['epoch_s']:.0f} s/epoch: {CRYPTEN['epoch_s'] / e.run_s:.2f}x  "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    run = sum(e.run_s for e in history.epochs)
    gb = sum(e.comm.send_bytes for e in history.epochs) / 1e9
    print(
        f"spu:SEMI2K 1 process   {epochs} epochs: {run / epochs:.1f} s/epoch, {gb / epochs:.2f} "
        f"GB/epoch (CrypTen {CRYPTEN['GB_3_epochs'] / 3:.2f} GB/epoch: "
        f"{CRYPTEN['GB_3_epochs'] / 3 / (gb / epochs):.2f}x less here), accuracy {acc:.4f} "
        f"(torch eager {ref:.4f}, |d| {abs(acc - ref):.4f}; CrypTen {CRYPTEN['acc']:.2f})",
        flush=True,
    )


_ROW = re.compile(
    r"^secretflow\s+SEMI2K\s+\S+\s+(\S+)\s+(\S+)\s+([\d.]+)s\s+\S+\s+([\d.]+) (MiB|KiB) sent "
    r"in (\d+) sends"
)


def two_processes(epochs: int) -> None:
    from ppml_torch.cli.launch import check_command
    from ppml_torch.runners.secretflow.launcher import launch

    argv = ["digits", "--runs", "secretflow:SEMI2K", "--epochs", str(epochs)]
    out = io.StringIO()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-digits-") as d:  # the cluster file
        result = launch(
            ["alice", "bob"], argv, timeout_s=60, out=out, check=check_command, workdir=d
        )
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"launch failed:\n{out.getvalue()[-3000:]}")
    for party in ("alice", "bob"):
        row = next(x for x in result.output(party).splitlines() if x.startswith("secretflow "))
        m = _ROW.match(row)
        if m is None:
            raise SystemExit(f"unexpected row from {party}: {row}")
        acc, dacc, epoch_s = m.group(1), m.group(2), float(m.group(3))
        mib = float(m.group(4)) * (1 if m.group(5) == "MiB" else 1 / 1024)
        sends = int(m.group(6))
        print(
            f"secretflow:SEMI2K {party:<5} {epochs} epochs: {epoch_s:.1f} s/epoch, "
            f"{mib * 2**20 / 1e9 / epochs:.2f} GB/epoch and {sends // epochs} sends/epoch "
            f"(this party; CrypTen {CRYPTEN['rounds_3_epochs'] // 3} rounds/epoch per party: "
            f"{CRYPTEN['rounds_3_epochs'] / 3 / (sends / epochs):.1f}x fewer here)  vs CrypTen "
            f"{CRYPTEN['epoch_s']:.0f} s/epoch: {CRYPTEN['epoch_s'] / epoch_s:.2f}x  "
            f"accuracy {acc} (|d| vs eager {dacc})",
            flush=True,
        )
    print(f"launch wall {wall:.0f}s (start-up of both parties included); load "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--two-processes", action="store_true")
    p.add_argument("--skip-in-process", action="store_true")
    args = p.parse_args(argv)
    print(f"digits CNN, {args.epochs} epochs; machine: {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    if not args.skip_in_process:
        in_process(args.epochs)
    if args.two_processes:
        two_processes(args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
