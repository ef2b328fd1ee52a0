"""The homework (10 epochs, SEMI2K) in one process vs one process per party.

    python bench/bench_parties.py                      # spu, secretflow simulation, 2 processes
    python bench/bench_parties.py --skip-simulation    # without the Ray simulation (~1 min less)

Rows: in-process ``spu`` (SPU's runtime, one thread per party, in-memory links), in-process
``secretflow`` (SecretFlow's simulation on one Ray), and one process per party on loopback
(SecretFlow production mode, ``open_session(..., cluster=, party=)``), each party on its own
share of the CPUs as ``ppml-torch launch`` places them (``--no-pin``: sharing them).  Each runs the homework
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


def _homework(session, data, epochs: int, module=None, loop: str = "fit"):
    """The homework as ``homework-mlp`` runs it: ``fit``, then ``predict`` of the test set
    (``loop="flax"``: the hand-written Flax loop it ran before, one unrolled program per
    epoch).  Returns (epoch run times, scores, seconds in training, seconds in predict)."""
    from ppml_torch.apps.homework import train as hw

    t0 = time.perf_counter()
    if loop == "flax":
        import flax_loop  # bench/flax_loop.py, beside this script

        apply_fn, params = hw.init_flax_mlp()
        res = flax_loop.fit(session, apply_fn, params, data, epochs=epochs)
        t1 = time.perf_counter()
        scores = flax_loop.predict_test(session, apply_fn, res.params, data)
        epochs_s = [r.run_s for r in res.reports if r.what == "epoch"]
        comm = [r.comm for r in res.reports if r.what == "epoch"][-1]
        return epochs_s, comm, scores, t1 - t0, time.perf_counter() - t1
    module = hw.torch_mlp() if module is None else module
    trained, history = hw.train(session, data, module=module, epochs=epochs)
    t1 = time.perf_counter()
    scores = hw.predict_test(session, trained if trained is not None else module, data)
    epochs_s = [e.run_s for e in history.epochs]
    return epochs_s, history.epochs[-1].comm, scores, t1 - t0, time.perf_counter() - t1


def _apply_tweaks(tweaks: dict) -> None:
    """Bench-only experiments, one at a time: SPU RuntimeConfig fields beyond ppml-torch's
    knobs (``runtime``) and SPU link options (``link``), patched into this process."""
    from ppml_torch.runners import config
    from ppml_torch.runners import spu as spu_runner

    extra = tweaks.get("runtime") or {}
    if extra:
        orig = config.spu_runtime_config

        def patched(cfg, *, profile=True):
            rc = orig(cfg, profile=profile)
            for k, v in extra.items():
                setattr(rc, k, v)
            return rc

        config.spu_runtime_config = patched
        spu_runner.spu_runtime_config = patched
    link = tweaks.get("link") or {}
    if link:
        import secretflow as sf

        orig_init = sf.SPU.__init__

        def init(self, cluster_def, link_desc=None, *a, **k):
            return orig_init(self, cluster_def, dict(link_desc or {}, **link), *a, **k)

        sf.SPU.__init__ = init


def _start_up():
    """The homework's torch module, and torch's optimizer machinery imported: start-up.

    The first ``torch.optim`` optimizer of a process imports ``torch._dynamo`` (about 7 s on
    this machine): a one-time import like SecretFlow's, timed with it, not with the run."""
    import torch

    from ppml_torch.apps.homework.train import torch_mlp

    module = torch_mlp()
    torch.optim.SGD(module.parameters(), lr=0.1)
    return module


def party_main(cluster: str, party: str, epochs: int, tweaks: dict) -> int:
    t0 = time.perf_counter()
    import secretflow  # noqa: F401 - timed apart: it is most of a party's start-up

    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.apps.homework.evaluate import auc
    from ppml_torch.runners import open_session

    module = _start_up()
    _apply_tweaks(tweaks)
    t_import = time.perf_counter() - t0
    data = load_data().for_party(party)
    t1 = time.perf_counter()
    s = open_session(
        "secretflow", "SEMI2K", cluster=cluster, party=party, profile=tweaks.get("profile", True)
    )
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    epochs_s, last_comm, scores, fit_s, predict_s = _homework(
        s, data, epochs, module, tweaks.get("loop", "fit")
    )
    run_s = time.perf_counter() - t2
    comm = [r.comm for r in s.reports if r.comm is not None]
    spu_bytes = sum(c.send_bytes for c in comm)
    spu_actions = sum(c.send_actions for c in comm)
    os_bytes = socket_bytes_sent(os.getpid())
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
        "epoch_actions": last_comm.send_actions if last_comm else 0,
        "os_bytes": os_bytes,
        "auc": None if scores is None else auc(scores, data),
        "rss_mb": _rss_mb(),
        "reports": [(r.what, round(r.run_s, 3)) for r in s.reports],
        "fit_s": fit_s,
        "predict_s": predict_s,
    }
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def in_process(backend: str, epochs: int, tweaks: dict) -> dict:
    from ppml_torch.apps.homework.data import load_data
    from ppml_torch.apps.homework.evaluate import auc
    from ppml_torch.runners import open_session

    data = load_data()
    t0 = time.perf_counter()
    if backend == "secretflow":
        import secretflow  # noqa: F401
    module = _start_up()
    _apply_tweaks({"runtime": tweaks.get("runtime")})
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    s = open_session(backend, "SEMI2K")
    t_open = time.perf_counter() - t1
    t2 = time.perf_counter()
    _, _, scores, _, _ = _homework(s, data, epochs, module, tweaks.get("loop", "fit"))
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


def multi_process(epochs: int, tweaks: dict) -> list[dict]:
    """Two party processes, each on its own share of the CPUs as ``ppml-torch launch`` places
    them (``tweaks["pin"]`` False: sharing every CPU)."""
    from ppml_torch.runners.secretflow.cluster import loopback_cluster
    from ppml_torch.runners.secretflow.launcher import cpu_shares, pin

    d = tempfile.mkdtemp(prefix="bench-parties-")
    path = os.path.join(d, "cluster.json")
    with open(path, "w") as f:
        json.dump(loopback_cluster(["alice", "bob"], protocol="SEMI2K"), f)
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--party",
                p,
                "--cluster",
                path,
                "--epochs",
                str(epochs),
                "--tweaks",
                json.dumps(tweaks),
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        for p in ("alice", "bob")
    ]
    shares = cpu_shares(len(procs)) if tweaks.get("pin", True) else None
    if shares is not None:  # right after start, as launch does: before any thread
        for proc, cpus in zip(procs, shares, strict=True):
            pin(proc.pid, cpus)
    results = []
    for proc in procs:
        text, _ = proc.communicate(timeout=900)
        line = [x for x in text.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise SystemExit(f"a party failed:\n{text[-3000:]}")
        results.append(json.loads(line[0][7:]))
    return results


def _placement(pinned: bool) -> str:
    from ppml_torch.runners.secretflow.launcher import cpu_shares, describe_shares

    shares = cpu_shares(2) if pinned else None
    if shares is None:
        return f"shared ({len(os.sched_getaffinity(0))} CPUs)"
    return describe_shares(("alice", "bob"), shares)


def _kv(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--skip-simulation", action="store_true")
    ap.add_argument(
        "--detail", action="store_true", help="every session step of bob's run, with its time"
    )
    ap.add_argument(
        "--loop", choices=("fit", "flax"), default="fit",
        help="fit (what homework-mlp runs) or the hand-written Flax loop it ran before",
    )  # fmt: skip
    ap.add_argument(
        "--runtime", action="append", default=[], metavar="KEY=VALUE",
        help="experiment: an SPU RuntimeConfig field (e.g. experimental_enable_inter_op_par=true)",
    )  # fmt: skip
    ap.add_argument(
        "--link", action="append", default=[], metavar="KEY=VALUE",
        help="experiment: an SPU link option of the 2-process run (e.g. throttle_window_size=0)",
    )  # fmt: skip
    ap.add_argument(
        "--no-pin", action="store_true",
        help="experiment: the two party processes share every CPU (launch gives each its own)",
    )  # fmt: skip
    ap.add_argument(
        "--no-profile", action="store_true",
        help="experiment: SPU's per-op profile off in the 2-process run (no byte counts)",
    )  # fmt: skip
    ap.add_argument("--tweaks", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--party", help=argparse.SUPPRESS)
    ap.add_argument("--cluster", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.party:
        return party_main(args.cluster, args.party, args.epochs, json.loads(args.tweaks))
    tweaks = {
        "loop": args.loop,
        "runtime": dict(_kv(x) for x in args.runtime),
        "link": dict(_kv(x) for x in args.link),
        "profile": not args.no_profile,
        "pin": not args.no_pin,
    }

    print(f"homework MLP, {args.epochs} epochs, SEMI2K FM64, 2 parties; times in seconds")
    rows = []
    if args.loop != "fit" or args.runtime or args.link or args.no_profile or args.no_pin:
        print(f"experiment: {json.dumps(tweaks)}")
    mp = multi_process(
        args.epochs, tweaks
    )  # first: nothing of SecretFlow loaded in this process yet
    spu = in_process("spu", args.epochs, tweaks)
    rows.append(("spu, 1 process", spu))
    if not args.skip_simulation:
        rows.append(("secretflow sim, 1 process", in_process("secretflow", args.epochs, tweaks)))
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
    if args.detail:
        steps = ", ".join(f"{w} {t:.2f}" for w, t in bob["reports"])
        print(
            f"bob's session steps (s): {steps}; fit {bob['fit_s']:.2f}, predict "
            f"{bob['predict_s']:.2f}"
        )
    print(
        f"run time, 2 processes / spu in-process: {bob['run_s'] / spu['run_s']:.2f}x; "
        f"first epoch {bob['first_epoch_s']:.1f} s (compiles), later epochs "
        f"{bob['later_epoch_s']:.2f} s each, {bob['epoch_actions']} SPU sends per party per "
        f"epoch ({1000 * bob['later_epoch_s'] / max(1, bob['epoch_actions']):.2f} ms a send); "
        "load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
        + "; peak RSS per party "
        + ", ".join(f"{r['party']} {r['rss_mb']:.0f} MB" for r in mp)
        + f"; party CPUs: {_placement(tweaks.get('pin', True))}"
    )
    print(
        "SPU bytes: SPU's own link count (per party, its sends); OS bytes: the kernel's "
        "bytes_sent of the party's TCP sockets (SPU link on brpc's baidu_std + SecretFlow's "
        "cross-silo channel on HTTP, framing included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
