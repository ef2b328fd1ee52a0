"""The homework (10 epochs, SEMI2K) in one process vs one process per party.

    python bench/bench_parties.py                      # spu, secretflow simulation, 2 processes
    python bench/bench_parties.py --skip-simulation    # without the Ray simulation (~1 min less)

Rows: in-process ``spu`` (SPU's runtime, one thread per party, in-memory links), in-process
``secretflow`` (SecretFlow's simulation on one Ray), and one process per party on loopback
(SecretFlow production mode, ``open_session(..., cluster=, party=)``).  Each runs the homework
as ``homework-mlp`` does: ``ppml_torch.fit`` (flax route), then ``ppml_torch.predict`` of the
test set.  Start-up (importing SecretFlow, opening the session) and run (the 10 epochs, the
weights revealed to alice, scoring the test set and revealing the scores to bob) are timed
apart.  Bytes: SPU's own count (its per-run link statistics)
and, for the multi-process run, what the kernel says each party's TCP sockets sent
(``ss -tinp``: ``bytes_sent`` of the party's connections, SPU link and cross-silo channel).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # this checkout's ppml_torch, also when run as a script
    sys.path.insert(0, ROOT)


def socket_bytes_sent(pid: int) -> int:
    """Sum of ``bytes_sent`` over the established TCP sockets of process ``pid`` (from ss)."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True
    ).stdout
    total, mine = 0, False
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            mine = f"pid={pid}," in line
            continue
        if mine:
            m = re.search(r"bytes_sent:(\d+)", line)
            if m:
                total += int(m.group(1))
    return total


def _homework(session, data, epochs: int, module=None):
    """The homework as ``homework-mlp`` runs it: ``fit``, then ``predict`` of the test set."""
    from ppml_torch.apps.homework import train as hw

    module = hw.torch_mlp() if module is None else module
    trained, history = hw.train(session, data, module=module, epochs=epochs)
    scores = hw.predict_test(session, trained if trained is not None else module, data)
    return history, scores


def party_main(cluster: str, party: str, epochs: int) -> int:
    t0 = time.perf_counter()
    import secretflow  # noqa: F401 - timed apart: it is most of a party's start-up

    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.apps.homework.evaluate import auc
    from ppml_torch.runners import open_session

    t_import = time.perf_counter() - t0
    data = load_data().for_party(party)
    t1 = time.perf_counter()
    s = open_session("secretflow", "SEMI2K", cluster=cluster, party=party)
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    history, scores = _homework(s, data, epochs)
    run_s = time.perf_counter() - t2
    comm = [r.comm for r in s.reports if r.comm is not None]
    spu_bytes = sum(c.send_bytes for c in comm)
    spu_actions = sum(c.send_actions for c in comm)
    os_bytes = socket_bytes_sent(os.getpid())
    epochs_s = [e.run_s for e in history.epochs]
    s.close()
    out = {
        "party": party,
        "import_s": t_import,
        "open_s": t_open,
        "run_s": run_s,
        "first_epoch_s": epochs_s[0],
        "later_epoch_s": sum(epochs_s[1:]) / max(1, len(epochs_s) - 1),
        "spu_bytes": spu_bytes,
        "spu_actions": spu_actions,
        "epoch_actions": (history.epochs[-1].comm.send_actions if history.epochs[-1].comm else 0),
        "os_bytes": os_bytes,
        "auc": None if scores is None else auc(scores, data),
        "rss_mb": _rss_mb(),
    }
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def in_process(backend: str, epochs: int) -> dict:
    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.apps.homework.evaluate import auc
    from ppml_torch.runners import open_session

    data = load_data()
    t0 = time.perf_counter()
    if backend == "secretflow":
        import secretflow  # noqa: F401
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    s = open_session(backend, "SEMI2K")
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    _, scores = _homework(s, data, epochs)
    run_s = time.perf_counter() - t2
    comm = [r.comm for r in s.reports if r.comm is not None]
    s.close()
    return {
        "import_s": t_import,
        "open_s": t_open,
        "run_s": run_s,
        "spu_bytes": sum(c.send_bytes for c in comm),
        "auc": auc(scores, data),
    }


def multi_process(epochs: int) -> list[dict]:
    from ppml_torch.runners.cluster import loopback_cluster

    d = tempfile.mkdtemp(prefix="bench-parties-")
    path = os.path.join(d, "cluster.json")
    with open(path, "w") as f:
        json.dump(loopback_cluster(["alice", "bob"], protocol="SEMI2K"), f)
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--party", p, "--cluster", path, "--epochs", str(epochs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        for p in ("alice", "bob")
    ]
    results = []
    for proc in procs:
        text, _ = proc.communicate(timeout=900)
        line = [x for x in text.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise SystemExit(f"a party failed:\n{text[-3000:]}")
        results.append(json.loads(line[0][7:]))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--skip-simulation", action="store_true")
    ap.add_argument("--party", help=argparse.SUPPRESS)
    ap.add_argument("--cluster", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.party:
        return party_main(args.cluster, args.party, args.epochs)

    print(f"homework MLP, {args.epochs} epochs, SEMI2K FM64, 2 parties; times in seconds")
    rows = []
    mp = multi_process(args.epochs)  # first: nothing of SecretFlow loaded in this process yet
    spu = in_process("spu", args.epochs)
    rows.append(("spu, 1 process", spu))
    if not args.skip_simulation:
        rows.append(("secretflow sim, 1 process", in_process("secretflow", args.epochs)))
    head = f"{'run':<28} {'import':>7} {'open':>7} {'run':>7} {'SPU bytes':>12} {'OS bytes':>12} {'AUC':>7}"
    print(head)
    print("-" * len(head))
    for name, r in rows:
        print(
            f"{name:<28} {r['import_s']:>7.1f} {r['open_s']:>7.1f} {r['run_s']:>7.1f} "
            f"{r['spu_bytes']:>12,} {'-':>12} {r['auc']:>7.4f}"
        )
    for r in mp:
        auc = "-" if r["auc"] is None else f"{r['auc']:.4f}"
        print(
            f"{'2 processes: ' + r['party']:<28} {r['import_s']:>7.1f} {r['open_s']:>7.1f} "
            f"{r['run_s']:>7.1f} {r['spu_bytes']:>12,} {r['os_bytes']:>12,} {auc:>7}"
        )
    bob = next(r for r in mp if r["party"] == "bob")
    print(
        f"run time, 2 processes / spu in-process: {bob['run_s'] / spu['run_s']:.2f}x; "
        f"first epoch {bob['first_epoch_s']:.1f} s (compiles), later epochs "
        f"{bob['later_epoch_s']:.2f} s each, {bob['epoch_actions']} SPU sends per party per "
        f"epoch ({1000 * bob['later_epoch_s'] / max(1, bob['epoch_actions']):.2f} ms a send); "
        "load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
        + "; peak RSS per party "
        + ", ".join(f"{r['party']} {r['rss_mb']:.0f} MB" for r in mp)
    )
    print(
        "SPU bytes: SPU's own link count (per party, its sends); OS bytes: the kernel's "
        "bytes_sent of the party's TCP sockets (SPU link on brpc's baidu_std + SecretFlow's "
        "cross-silo channel on HTTP, framing included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
