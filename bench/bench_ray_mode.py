"""SecretFlow production mode with and without a Ray per party, side by side.

    python bench/bench_ray_mode.py                      # no Ray, Ray+grpc, Ray+brpc_link
    python bench/bench_ray_mode.py --modes noray,ray-grpc --ops 20

For each mode, two party processes (alice, bob) on loopback each run the same program:
import secretflow, ``sf.init`` in production mode (``parties=None``, a cluster config), an SPU
device (SEMI2K FM64), a first tiny program (alice's 2x2 ones @ bob's 2x2 threes, moved to
bob's PYU and read in bob's process only), then ``--ops`` calls of the same SPU op (each waits
for this party's share: the steady per-op latency) and ``--ops`` calls of the op followed by
a move to bob (bob reads each result), then ``sf.shutdown()``.  The script then returns: the
benchmark records whether the party's process ends by itself, and how long after shutdown.

Modes:

* ``noray``: ``ray_mode=False`` with ppml-torch's own settings (``cross_silo_comm_backend=
  "brpc_link"``, the link options of ``ppml_torch/runners/secretflow/devices.py``).
* ``ray-grpc``: ``ray_mode=True`` as the lead's prototype (``address="local"``,
  ``num_cpus=2``, ``cross_silo_comm_backend="grpc"``).
* ``ray-brpc``: ``ray_mode=True`` with ``cross_silo_comm_backend="brpc_link"``.
* ``proto``: ``ray-grpc`` with everything else as the lead's prototype
  (``/work/wt/issues/raymode_prototype.py``): its link options (20 s receive timeout, 30
  connection attempts), SPU's default link protocol, and bob reading the first result with
  ``sf.reveal`` (RayFed's ``fed.get``, which also sends bob's object to alice).

The other modes use the same SPU link options (ppml-torch's: ``brpc_channel_protocol="baidu_std"``),
so the only differences are Ray and the cross-silo channel.

The benchmark samples each party's process tree from ``/proc`` (the party's descendants and
every process of its session: each party starts in a new session) every 0.25 s: peak process
count, peak RSS summed over the tree, and peak PSS (proportional set size: shared pages, e.g.
Ray's object store, counted once).  After the parties end it lists the processes of theirs
that are still alive (Ray agents left behind), then ends them by their pid.  It never runs
``ray stop``: that would also stop the Ray clusters of other users of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # this checkout's ppml_torch, also when run as a script
    sys.path.insert(0, ROOT)

MODES = {  # name: (label, ray_mode, cross_silo_comm_backend)
    "noray": ("no Ray, brpc", False, "brpc_link"),
    "ray-grpc": ("Ray, grpc", True, "grpc"),
    "ray-brpc": ("Ray, brpc", True, "brpc_link"),
    "proto": ("Ray, prototype", True, "grpc"),
}
PARTIES = ("alice", "bob")


# -- one party ---------------------------------------------------------------------------------
def party_main(args: argparse.Namespace) -> None:
    """The program every party runs (in its own process)."""

    def mark(what: str, **extra: object) -> None:
        print("MARK " + json.dumps(dict(extra, what=what, t=time.time())), flush=True)

    with open(args.config) as f:
        cfg = json.load(f)
    _, ray_mode, backend = MODES[args.mode]
    me = args.party
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out: dict = {"party": me, "mode": args.mode}
    t0 = time.perf_counter()
    import numpy as np
    import secretflow as sf

    out["import_s"] = time.perf_counter() - t0
    mark("imported")
    # ppml-torch's link options (runners/secretflow/devices.py), with its default bounds
    link_opts = {
        "recv_timeout_ms": 30_000,
        "connect_retry_times": 60,
        "connect_retry_interval_ms": 1000,
    }
    proto = args.mode == "proto"
    if proto:  # the prototype's
        link_opts = {
            "recv_timeout_ms": 20_000,
            "connect_retry_times": 30,
            "connect_retry_interval_ms": 1000,
        }
    cluster = {
        "parties": {p: {"address": cfg[p]["silo"], "listen_addr": cfg[p]["silo"]} for p in PARTIES},
        "self_party": me,
    }
    kw: dict = {}
    if ray_mode:
        kw = {"num_cpus": 2}  # the prototype's
    t1 = time.perf_counter()
    sf.init(
        address="local",
        cluster_config=cluster,
        ray_mode=ray_mode,
        cross_silo_comm_backend=backend,
        # a copy: in Ray mode sf.init adds exit_on_sending_failure to the dict it is given,
        # and SPU's link descriptor refuses that key
        cross_silo_comm_options=dict(link_opts, recv_timeout_ms=20_000 if proto else 60_000),
        logging_level="error",
        enable_waiting_for_other_parties_ready=True,
        **kw,
    )
    out["init_s"] = time.perf_counter() - t1
    mark("initialized")

    def local(fed_obj):  # a FedObject of this party, read here (nothing sent)
        if hasattr(fed_obj, "get_ray_object_ref"):  # RayFed (ray_mode=True)
            import ray

            return ray.get(fed_obj.get_ray_object_ref())
        return fed_obj.get_object()

    t2 = time.perf_counter()
    spu_cluster = {
        "nodes": [
            {"party": p, "address": cfg[p]["spu"], "listen_address": cfg[p]["spu"]} for p in PARTIES
        ],
        "runtime_config": {"protocol": "SEMI2K", "field": "FM64"},
    }
    spu_link = dict(link_opts) if proto else dict(link_opts, brpc_channel_protocol="baidu_std")
    spu = sf.SPU(spu_cluster, link_desc=spu_link)
    rank = PARTIES.index(me)
    alice, bob = sf.PYU("alice"), sf.PYU("bob")
    xa = alice(lambda: np.ones((2, 2), np.float32))()
    xb = bob(lambda: np.full((2, 2), 3, np.float32))()
    sa, sb = xa.to(spu), xb.to(spu)

    def matmul(a, b):
        return a @ b

    z = spu(matmul)(sa, sb)
    zb = z.to(bob)
    if me == "bob":
        value = np.asarray(sf.reveal(zb) if proto else local(zb.data))
        out["value_ok"] = bool(np.allclose(value, 6.0, atol=1e-3))
        out["value"] = value.tolist()
    else:
        local(z.shares_name[rank])  # alice: its share of the result exists
    out["first_op_s"] = time.perf_counter() - t2
    mark("first op")

    op_ms = []
    for _ in range(args.ops):
        t = time.perf_counter()
        r = spu(matmul)(sa, sb)
        local(r.shares_name[rank])
        op_ms.append(1000 * (time.perf_counter() - t))
    out["op_ms"] = op_ms
    reveal_ms = []
    for _ in range(args.ops):
        t = time.perf_counter()
        r = spu(matmul)(sa, sb).to(bob)
        if me == "bob":
            local(r.data)
        reveal_ms.append(1000 * (time.perf_counter() - t))
    out["reveal_ms"] = reveal_ms
    mark("ops done")
    t3 = time.perf_counter()
    sf.shutdown()
    out["shutdown_s"] = time.perf_counter() - t3
    print("RESULT " + json.dumps(out), flush=True)
    mark("shutdown done")
    # and return: does the interpreter end by itself?


# -- the benchmark -----------------------------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE")


def _procs() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, session id, start time, comm) of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        rest = s[s.rindex(")") + 2 :].split()
        out[int(name)] = (int(rest[1]), int(rest[3]), int(rest[19]), comm)
    return out


def _tree(root: int, procs: dict) -> set[int]:
    """``root``, its descendants, and every process of its session."""
    mine = {root} | {p for p, v in procs.items() if v[1] == root}
    grew = True
    while grew:
        new = {p for p, v in procs.items() if v[0] in mine} - mine
        grew = bool(new)
        mine |= new
    return {p for p in mine if p in procs}


def _mem(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in bytes (0 when it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


def _alive(key: tuple[int, int]) -> bool:
    pid, start = key
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return False
    rest = s[s.rindex(")") + 2 :].split()
    return int(rest[19]) == start and rest[0] != "Z"


def _marks(path: str) -> dict[str, float]:
    marks = {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MARK "):
                    m = json.loads(line[5:])
                    marks[m["what"]] = m["t"]
    except (OSError, ValueError):
        pass
    return marks


def _result(path: str) -> dict | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("RESULT "):
                    return json.loads(line[7:])
    except (OSError, ValueError):
        pass
    return None


def _error(path: str) -> str:
    """The last line of a traceback or an error in a party's stderr (the first such line of
    Ray's worker errors, which name the module that failed)."""
    try:
        with open(path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f]
    except OSError:
        return ""
    errs = [ln for ln in lines if "Error" in ln and ("Error:" in ln or ln.startswith("E"))]
    mod = [ln for ln in lines if "No module named" in ln]
    return (mod or errs or lines or [""])[-1][-300:]


def run_mode(mode: str, args: argparse.Namespace, tmp: str) -> dict:
    from ppml_torch.runners.secretflow.cluster import free_ports

    ports = free_ports(4)
    cfg = {
        p: {"silo": f"127.0.0.1:{ports[2 * i]}", "spu": f"127.0.0.1:{ports[2 * i + 1]}"}
        for i, p in enumerate(PARTIES)
    }
    cfg_path = os.path.join(tmp, f"{mode}.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    procs, files = {}, {}
    seen: dict[str, dict[tuple[int, int], str]] = {p: {} for p in PARTIES}
    peak = {p: {"n": 0, "rss": 0, "pss": 0} for p in PARTIES}
    ended: dict[str, float] = {}
    killed: dict[str, str] = {}
    load0 = os.getloadavg()
    try:
        for p in PARTIES:
            out_path = os.path.join(tmp, f"{mode}-{p}.out")
            err_path = os.path.join(tmp, f"{mode}-{p}.err")
            files[p] = (out_path, err_path)
            with open(out_path, "w") as fo, open(err_path, "w") as fe:
                procs[p] = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--party", p]
                    + ["--mode", mode, "--config", cfg_path, "--ops", str(args.ops)],
                    stdout=fo,
                    stderr=fe,
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                )
        start = time.time()
        while len(ended) < len(PARTIES):
            now = time.time()
            table = _procs()
            for p, proc in procs.items():
                if p in ended:
                    continue
                if proc.poll() is not None:
                    ended[p] = now
                    continue
                tree = _tree(proc.pid, table)
                rss = pss = 0
                for pid in tree:
                    seen[p][(pid, table[pid][2])] = table[pid][3]
                    r, s = _mem(pid)
                    rss, pss = rss + r, pss + s
                pk = peak[p]
                pk["n"], pk["rss"], pk["pss"] = (
                    max(pk["n"], len(tree)),
                    max(pk["rss"], rss),
                    max(pk["pss"], pss),
                )
                done = _marks(files[p][0]).get("shutdown done")
                if now - start > args.deadline:
                    killed[p] = f"deadline {args.deadline:g} s"
                elif done is not None and now - done > args.exit_wait:
                    killed[p] = f"still running {args.exit_wait:g} s after shutdown"
                if p in killed:
                    _kill_group(proc.pid)
                    proc.wait(10)
                    ended[p] = time.time()
            time.sleep(0.25)
        time.sleep(args.grace)  # Ray's agents end asynchronously after their driver
        table = _procs()  # orphans keep their session id (the party's pid)
        for p, proc in procs.items():
            for pid, v in table.items():
                if v[1] == proc.pid:
                    seen[p][(pid, v[2])] = v[3]
    finally:
        for p, proc in procs.items():
            if proc.poll() is None:
                killed.setdefault(p, "bench ended")
                _kill_group(proc.pid)
    left = {p: sorted({name for key, name in seen[p].items() if _alive(key)}) for p in PARTIES}
    left_n = {p: sum(1 for key in seen[p] if _alive(key)) for p in PARTIES}
    for p in PARTIES:  # only what this benchmark started
        _kill_pids([k for k in seen[p] if _alive(k)])
    still = {p: sum(1 for key in seen[p] if _alive(key)) for p in PARTIES}
    rows = {}
    for p in PARTIES:
        res = _result(files[p][0])
        marks = _marks(files[p][0])
        rows[p] = {
            "result": res,
            "rc": procs[p].returncode,
            "error": None if res else _error(files[p][1]),
            "peak": peak[p],
            "exit_after_s": (ended[p] - marks["shutdown done"])
            if "shutdown done" in marks and p not in killed
            else None,
            "killed": killed.get(p),
            "left": left[p],
            "left_n": left_n[p],
            "still": still[p],
            "names": sorted(set(seen[p].values())),
        }
    if any(rows[p]["result"] is None for p in PARTIES):  # keep the logs of a failed run
        keep = tempfile.mkdtemp(prefix=f"bench-ray-mode-{mode}-logs-")
        for p in PARTIES:
            for path in files[p]:
                shutil.copy(path, keep)
        print(f"{MODES[mode][0]}: a party failed; its output is in {keep}", flush=True)
    return {"mode": mode, "parties": rows, "load": (load0, os.getloadavg())}


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            return
        time.sleep(2.0)


def _kill_pids(keys: list[tuple[int, int]]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [k for k in keys if _alive(k)]
        for pid, _ in live:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if live:
            time.sleep(2.0)


# -- the table ---------------------------------------------------------------------------------
def _pair(rows: dict, get) -> tuple[str, float | None]:
    vals = []
    for p in PARTIES:
        try:
            vals.append(get(rows[p]))
        except (TypeError, KeyError, ValueError, statistics.StatisticsError):
            vals.append(None)
    txt = "/".join("-" if v is None else _fmt(v) for v in vals)
    total = sum(vals) if all(isinstance(v, (int, float)) for v in vals) else None
    return txt, total


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


METRICS = [
    ("import secretflow, s", lambda r: r["result"]["import_s"]),
    ("sf.init, s", lambda r: r["result"]["init_s"]),
    ("first op (SPU device + 2x2 matmul), s", lambda r: r["result"]["first_op_s"]),
    ("SPU op, median ms", lambda r: statistics.median(r["result"]["op_ms"])),
    ("SPU op + move to bob, median ms", lambda r: statistics.median(r["result"]["reveal_ms"])),
    ("sf.shutdown, s", lambda r: r["result"]["shutdown_s"]),
    ("processes (peak)", lambda r: r["peak"]["n"]),
    ("RSS of the tree (peak), MB", lambda r: r["peak"]["rss"] / 1e6),
    ("PSS of the tree (peak), MB", lambda r: r["peak"]["pss"] / 1e6),
    ("exited by itself, s after shutdown", lambda r: "no" if r["killed"] else r["exit_after_s"]),
    ("processes left 5 s after the end", lambda r: r["left_n"]),
]
NO_RATIO = {"exited by itself, s after shutdown", "processes left 5 s after the end"}


def print_table(results: list[dict]) -> None:
    base = results[0]
    heads = [MODES[r["mode"]][0] for r in results]
    ratio_heads = [f"{r['mode']}/noray" for r in results[1:]] if base["mode"] == "noray" else []
    w0, w = 40, 16
    print(
        f"{'per party (alice/bob)':<{w0}}"
        + "".join(f"{h:>{w}}" for h in heads)
        + "".join(f"{h:>{w}}" for h in ratio_heads)
    )
    print("-" * (w0 + w * (len(heads) + len(ratio_heads))))
    for label, get in METRICS:
        cells, totals = [], []
        for r in results:
            txt, tot = _pair(r["parties"], get)
            cells.append(txt)
            totals.append(tot)
        line = f"{label:<{w0}}" + "".join(f"{c:>{w}}" for c in cells)
        if ratio_heads and label not in NO_RATIO:
            for tot in totals[1:]:
                ok = tot is not None and totals[0] not in (None, 0)
                line += f"{(f'{tot / totals[0]:.1f}x' if ok else '-'):>{w}}"
        print(line)
    print("ratios: the two parties' sum in the Ray mode over the same sum without Ray")
    for r in results:
        head = MODES[r["mode"]][0]
        for p in PARTIES:
            row = r["parties"][p]
            res = row["result"]
            notes = []
            if res is None:
                notes.append(f"FAILED (exit code {row['rc']}): {row['error']}")
            elif p == "bob":
                notes.append(
                    f"read {res.get('value')} ({'ok' if res.get('value_ok') else 'WRONG'})"
                )
            if row["killed"]:
                notes.append(f"killed by the bench: {row['killed']}")
            if row["left"]:
                notes.append(f"left behind: {', '.join(row['left'])}")
            if row["still"]:
                notes.append(f"{row['still']} still alive after the bench's kill")
            notes.append(f"tree: {', '.join(row['names'])}")
            print(f"{head}, {p}: " + "; ".join(notes))
        (a1, a5, a15), (b1, b5, b15) = r["load"]
        print(f"{head}: load average {a1:.1f} {a5:.1f} {a15:.1f} before, {b1:.1f} after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="noray,ray-grpc,ray-brpc")
    ap.add_argument("--ops", type=int, default=20, help="SPU op calls for the median")
    ap.add_argument("--deadline", type=float, default=240.0, help="s per party process")
    ap.add_argument("--exit-wait", type=float, default=30.0, help="s to wait for an exit")
    ap.add_argument("--grace", type=float, default=5.0, help="s before looking for leftovers")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--party", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.party:
        party_main(args)
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        sys.exit(f"bench_ray_mode: unknown mode {bad[0]!r}; choose from {', '.join(MODES)}")
    from importlib.metadata import version

    print(
        f"SecretFlow production mode, 2 parties on loopback, SEMI2K FM64; {os.cpu_count()} cores;"
        f" secretflow {version('secretflow')}, ray {version('ray')},"
        f" secretflow-rayfed {version('secretflow-rayfed')}, setuptools {version('setuptools')}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-mode-") as tmp:
        for mode in modes:
            t = time.time()
            results.append(run_mode(mode, args, tmp))
            print(f"{MODES[mode][0]}: {time.time() - t:.0f} s", flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    print()
    print_table(results)


if __name__ == "__main__":
    main()
