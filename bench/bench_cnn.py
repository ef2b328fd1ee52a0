"""CNN inference under MPC: the issue's ResNet-ish net (vs CrypTen) and the project's ResNet-18.

    .venv/bin/python bench/bench_cnn.py resnetish            # in-process spu:SEMI2K and 2 processes
    .venv/bin/python bench/bench_cnn.py resnet18             # batch 1, 3x224x224, SEMI2K and ABY3

``resnetish``: batch 8 of 3x32x32 (seed 0), conv3x3(3->16, no bias)-BN-ReLU-MaxPool2d(2),
basic blocks 16->16 (stride 1) and 16->32 (stride 2, 1x1 conv + BN shortcut),
AdaptiveAvgPool2d(1), Linear(32, 10); eval mode, batch norm as it is (no folding by hand).
Converted by the graph route; the weights are alice's secret, the images bob's; the logits
are revealed to bob.  Rows: ``spu:SEMI2K`` in one process (SPU's runtime, in-memory links),
as it is (``ppml_torch.predict``) and with batch norm folded at conversion
(``convert(..., fold_batch_norm=True)``), and one process per party on loopback (SecretFlow production mode, each party on its own
share of the CPUs as ``ppml-torch launch`` places them), both through ``ppml_torch.predict``.
CrypTen 0.4.1's figures on this machine (issue 20; two processes, batch norm folded by hand
since its ONNX import cannot take it): 3.84 s, 290 MiB, 100 rounds.

``resnet18``: ``ppml_torch.models.resnet.ResNet`` (ResNet-18, 1000 classes, seeded random
weights, eval mode) on one 3x224x224 image, ``spu:SEMI2K`` and ``spu:ABY3`` in one process:
compile and run time, bytes and sends (all parties), peak RSS of this process.

Times exclude conversion; "run" is the SPU execution of the one inference (weights and
images put before it).  Figures: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CRYPTEN = {"s": 3.84, "MiB": 290, "rounds": 100}


def resnetish():
    """The issue's ResNet-ish net, seed 0, eval mode, with non-trivial running statistics."""
    import torch
    import torch.nn as nn

    from ppml_torch.models.resnet import BasicBlock

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        BasicBlock(16, 16, stride=1),
        BasicBlock(16, 32, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return net.eval(), images


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _predict(session, net, images, owner_has_images: bool):
    """predict in ``session``; returns (logits or None, seconds, bytes, sends)."""
    import jax
    import numpy as np

    import ppml_torch

    x = images.numpy() if owner_has_images else jax.ShapeDtypeStruct(images.shape, np.float32)
    first = len(session.reports)
    t0 = time.perf_counter()
    out = ppml_torch.predict(
        net, x, route="graph", session=session, owner="bob", weights_owner="alice", reveal_to="bob"
    )
    wall = time.perf_counter() - t0
    reports = session.reports[first:]
    comm = [r.comm for r in reports if r.comm is not None]
    run = sum(r.run_s for r in reports)
    return out, wall, run, sum(c.send_bytes for c in comm), sum(c.send_actions for c in comm)


def in_process_resnetish() -> tuple[dict, dict]:
    """(predict with batch norm as it is, the same program with batch norm folded at
    conversion: ``convert(..., fold_batch_norm=True)`` run by ``wrap``)."""
    import numpy as np
    import torch

    import ppml_torch
    from ppml_torch.runners import open_session, wrap

    net, images = resnetish()
    with torch.no_grad():
        ref = net(images).numpy()
    with open_session("spu", "SEMI2K", "FM64") as s:
        _predict(s, net, images, True)  # conversion and compilation, once
        out, wall, run, sent, sends = _predict(s, net, images, True)
        cm = ppml_torch.convert(net, (images,), fold_batch_norm=True)
        f = wrap(s, cm.apply, owners=("alice", "bob"))
        f(cm.params, images.numpy())  # compilation, once
        t0 = time.perf_counter()
        folded = f(cm.params, images.numpy())
        fwall = time.perf_counter() - t0
        rep = f.last_report
    as_is = {"wall_s": wall, "run_s": run, "bytes": sent, "sends": sends,
             "err": float(np.max(np.abs(np.asarray(out) - ref)))}  # fmt: skip
    fold = {"wall_s": fwall, "run_s": rep.run_s, "bytes": rep.comm.send_bytes,
            "sends": rep.comm.send_actions, "err": float(np.max(np.abs(np.asarray(folded) - ref)))}  # fmt: skip
    return as_is, fold


def party_main(cluster: str, party: str) -> int:
    import numpy as np
    import torch

    from ppml_torch.runners import open_session

    net, images = resnetish()
    with torch.no_grad():
        ref = net(images).numpy()
    s = open_session("secretflow", "SEMI2K", cluster=cluster, party=party)
    _predict(s, net, images, party == "bob")  # conversion and compilation, once
    out, wall, run, sent, sends = _predict(s, net, images, party == "bob")
    s.close()
    err = None if out is None else float(np.max(np.abs(np.asarray(out) - ref)))
    res = {"party": party, "wall_s": wall, "run_s": run, "bytes": sent, "sends": sends, "err": err}
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def two_processes() -> list[dict]:
    from ppml_torch.runners.secretflow.cluster import loopback_cluster
    from ppml_torch.runners.secretflow.launcher import cpu_shares, pin

    with tempfile.TemporaryDirectory(prefix="bench-cnn-") as d:
        path = os.path.join(d, "cluster.json")
        with open(path, "w") as f:
            json.dump(loopback_cluster(["alice", "bob"], protocol="SEMI2K"), f)
        env = dict(os.environ, PYTHONPATH=ROOT)
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--party", p, "--cluster", path],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                start_new_session=True,
            )
            for p in ("alice", "bob")
        ]
        shares = cpu_shares(len(procs))
        if shares is not None:
            for proc, cpus in zip(procs, shares, strict=True):
                pin(proc.pid, cpus)
        results = []
        for proc in procs:
            text, _ = proc.communicate(timeout=1800)
            line = [x for x in text.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                raise SystemExit(f"a party failed:\n{text[-3000:]}")
            results.append(json.loads(line[0][7:]))
    return results


def bench_resnetish() -> None:
    print(f"ResNet-ish, batch 8 x 3x32x32, eval, batch norm as is; load {os.getloadavg()[0]:.1f}")
    for label, r in zip(("as is", "BN folded"), in_process_resnetish(), strict=True):
        print(
            f"spu:SEMI2K one process, {label:<9} run {r['run_s']:.2f}s (call {r['wall_s']:.2f}s)  "
            f"{r['bytes'] / 2**20:.1f} MiB in {r['sends']} sends  max|err| {r['err']:.1e}  "
            f"vs CrypTen 3.84 s: {CRYPTEN['s'] / r['wall_s']:.1f}x",
            flush=True,
        )
    for p in two_processes():
        err = "" if p["err"] is None else f"  max|err| {p['err']:.1e}"
        print(
            f"secretflow:SEMI2K {p['party']:<6}   run {p['run_s']:.2f}s (predict {p['wall_s']:.2f}s)"
            f"  {p['bytes'] / 2**20:.1f} MiB in {p['sends']} sends (this party){err}  "
            f"vs CrypTen 3.84 s: {CRYPTEN['s'] / p['wall_s']:.1f}x",
            flush=True,
        )
    print(f"load {os.getloadavg()[0]:.1f} at the end")


def bench_resnet18(protocols: list[str]) -> None:
    import jax
    import numpy as np
    import torch

    import ppml_torch
    from ppml_torch.models.resnet import ResNet
    from ppml_torch.runners import open_session, wrap

    torch.manual_seed(0)
    net = ResNet().eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x).numpy()
    t0 = time.perf_counter()
    cm = ppml_torch.convert(net, (x,))
    print(f"ResNet-18, 1 x 3x224x224; conversion {time.perf_counter() - t0:.1f}s; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    for protocol in protocols:
        with open_session("spu", protocol, "FM64") as s:
            f = wrap(s, cm.apply, owners=("alice", "bob"))
            out = f(cm.params, x.numpy())
            rep = f.last_report
            err = float(np.max(np.abs(np.asarray(out) - ref)))
            top = int(np.argmax(np.asarray(out))) == int(np.argmax(ref))
            print(
                f"spu:{protocol:<7} compile {rep.compile_s:.1f}s run {rep.run_s:.1f}s  "
                f"{rep.comm.send_bytes / 2**30:.2f} GiB in {rep.comm.send_actions} sends  "
                f"peak RSS {_rss_gib():.2f} GiB  max|err| {err:.1e}  top-1 same: {top}  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    del jax


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=("resnetish", "resnet18"))
    p.add_argument("--protocols", nargs="+", default=["SEMI2K", "ABY3"])
    p.add_argument("--party", help=argparse.SUPPRESS)
    p.add_argument("--cluster", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.party:
        return party_main(args.cluster, args.party)
    if args.what == "resnet18":
        bench_resnet18(args.protocols)
    else:
        bench_resnetish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
