"""The profile's network estimate against a measurement: one process per party, limited links.

    .venv/bin/python bench/bench_network.py [--program homework|gpt2] [--protocol SEMI2K]
        [--repeats 5] [--settings loopback rtt10 rtt40 ns bw100 bw1000 wan ...]

Needs root (network namespaces, ``tc``).  The program (``ppml-torch profile --homework`` or
``--gpt2``'s) is profiled in one process (``ppml_torch.profiling``), then compiled once and
run by one process per party, each with its own SPU runtime and a brpc link (SecretFlow
production mode's link: brpc's ``baidu_std`` protocol), under each setting:

* ``loopback``: the parties on this machine's loopback, nothing limited;
* ``rttN``: every message delayed by N/2 ms each way: each process reaches its peers through
  a relay of its own that holds every chunk of bytes for N/2 ms before passing it on (the
  kernel here has no ``netem`` qdisc); ``relay0``: through the relay without delay (its own
  cost);
* ``ns``: each party in its own network namespace, joined by veth pairs to a bridge, no limit
  (``nsrelay0``: and through the relay, without delay);
* ``bwN``: the same, each party's veth limited to N Mbit/s by a ``tbf`` qdisc (what it sends);
* ``wan``: 100 Mbit/s and a 40 ms round trip; ``lan``: 1 Gbit/s and 0.5 ms.

Per setting it prints the measured time of one run (median over ``--repeats`` runs of the
slowest party's time) and ``report.estimate(bandwidth, rtt)``, whose compute term is the
one-process time; and the same estimate with the measured time of the same links unlimited
(``loopback``, ``relay0``, ``ns`` or ``nsrelay0``: the processes, sockets and relay
included) as its compute term, which isolates the network terms.  Every
namespace and qdisc it makes is removed at the end (also on failure).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NS = "ppmlh5"  # namespace prefix
SETTINGS = {  # name -> (namespaces, bandwidth bit/s or None, round trip s; None: relay, 0 s)
    "loopback": (False, None, 0.0),
    "relay0": (False, None, None),
    "rtt10": (False, None, 0.010),
    "rtt40": (False, None, 0.040),
    "ns": (True, None, 0.0),
    "nsrelay0": (True, None, None),
    "bw100": (True, 100e6, 0.0),
    "bw1000": (True, 1e9, 0.0),
    "lan": (True, 1e9, 0.0005),
    "wan": (True, 100e6, 0.040),
}


# -- the relay that delays every message ---------------------------------------------------
class Relay:
    """Listen on 127.0.0.1 (an ephemeral port) and forward each connection to ``target``,
    holding every chunk for ``delay`` seconds in each direction (order kept).

    Threads and ``time.sleep`` (a fraction of a millisecond late here), not an event loop:
    epoll's timeout is in whole milliseconds, which made each delayed message up to 1 ms late.
    """

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self._connect, args=(conn,), daemon=True).start()

    def _connect(self, conn: socket.socket) -> None:
        for _ in range(600):  # the peer's server may start later: retry for up to 60 s
            try:
                peer = socket.create_connection(self.target)
                break
            except OSError:
                time.sleep(0.1)
        else:
            conn.close()
            return
        for sock in (conn, peer):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pump(conn, peer)
        self._pump(peer, conn)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        import collections

        queue: collections.deque = collections.deque()
        ready = threading.Condition()

        def feed() -> None:
            while True:
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                with ready:
                    queue.append((time.perf_counter() + self.delay, data))
                    ready.notify()
                if not data:
                    return

        def drain() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, data = queue.popleft()
                if not data:
                    dst.close()
                    return
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=feed, daemon=True).start()
        threading.Thread(target=drain, daemon=True).start()


# -- one party's process --------------------------------------------------------------------
def child(rank: int, job_dir: Path, delay: float) -> None:
    import spu.api as spu_api
    from spu import libspu, spu_pb2

    from ppml_torch.runners.comm import SpuLogTap, party_links

    job = pickle.loads((job_dir / "job.pkl").read_bytes())
    tap = SpuLogTap.get()  # SPU's log to a file (TMPDIR is the job's folder)
    addrs = job["addresses"]
    desc = libspu.link.Desc()
    desc.id = job["id"]
    desc.recv_timeout_ms = 600_000
    desc.connect_retry_times = 120
    desc.connect_retry_interval_ms = 500
    desc.brpc_channel_protocol = "baidu_std"
    for q, name in enumerate(job["parties"]):
        host, port = addrs[q]
        if q != rank and delay >= 0:
            relay = Relay((host, port), delay)
            host, port = "127.0.0.1", relay.port
        desc.add_party(name, f"{host}:{port}")
    link = libspu.link.create_brpc(desc, rank)
    rc = spu_pb2.RuntimeConfig()
    rc.ParseFromString(job["runtime_config"])
    rt = spu_api.Runtime(link, rc)
    for name, (meta, chunks) in job["shares"][rank].items():
        share = libspu.Share()
        share.meta, share.share_chunks = meta, chunks
        rt.set_var(name, share)
    exe = spu_pb2.ExecutableProto()
    exe.ParseFromString(job["executable"])
    times = []
    mark = 0
    for i in range(job["repeats"] + 1):  # the first run warms the connections up
        if i == 1:
            mark = tap.mark()
        t0 = time.perf_counter()
        rt.run(exe)
        if i:
            times.append(time.perf_counter() - t0)
    sent = party_links(tap.read_since(mark))
    print(json.dumps({"rank": rank, "times": times, "sent": sent}), flush=True)
    link.stop_link()


# -- the parent -----------------------------------------------------------------------------
def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def make_namespaces(n: int) -> None:
    sh(f"ip netns add {NS}-br && ip netns exec {NS}-br ip link add br0 type bridge")
    sh(f"ip netns exec {NS}-br ip link set br0 up")
    for r in range(n):
        p, v, b = f"{NS}-p{r}", f"h5p{r}", f"h5b{r}"
        sh(f"ip netns add {p} && ip netns exec {p} ip link set lo up")
        sh(f"ip link add {v} netns {p} type veth peer name {b} netns {NS}-br")
        sh(f"ip netns exec {NS}-br ip link set {b} master br0 up")
        sh(f"ip netns exec {p} ip addr add 10.77.0.{10 + r}/24 dev {v}")
        sh(f"ip netns exec {p} ip link set {v} up")


def limit(n: int, bandwidth: float | None) -> None:
    for r in range(n):
        p, v = f"{NS}-p{r}", f"h5p{r}"
        if bandwidth is None:
            subprocess.run(f"ip netns exec {p} tc qdisc del dev {v} root", shell=True,
                           capture_output=True)  # fmt: skip
            continue
        burst = max(16 * 1024, int(bandwidth / 8 * 0.001))  # 1 ms of traffic, at least 16 KiB
        sh(
            f"ip netns exec {p} tc qdisc replace dev {v} root tbf rate {int(bandwidth)}bit "
            f"burst {burst} latency 1s"
        )


def remove_namespaces(n: int) -> None:
    for name in [f"{NS}-p{r}" for r in range(n)] + [f"{NS}-br"]:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_setting(job_dir: Path, n: int, in_ns: bool, rtt: float | None, repeats: int) -> dict:
    job = pickle.loads((job_dir / "job.pkl").read_bytes())
    if in_ns:
        job["addresses"] = [(f"10.77.0.{10 + r}", 29400) for r in range(n)]
    else:
        job["addresses"] = [("127.0.0.1", p) for p in free_ports(n)]
    job["repeats"] = repeats
    job["id"] = f"h5-{time.time_ns()}"
    (job_dir / "job.pkl").write_bytes(pickle.dumps(job))
    env = dict(os.environ, TMPDIR=str(job_dir), PYTHONPATH=str(Path(__file__).parent.parent))
    procs = []
    for r in range(n):
        delay = 0.0 if rtt is None else rtt / 2 if rtt > 0 else -1.0  # -1: no relay
        cmd = [sys.executable, __file__, "--child", str(r), "--job", str(job_dir),
               "--delay", str(delay)]  # fmt: skip
        if in_ns:
            cmd = ["ip", "netns", "exec", f"{NS}-p{r}", *cmd]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        if p.returncode:
            raise SystemExit(f"a party's process failed (exit {p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    per_run = [max(r["times"][i] for r in results) for i in range(repeats)]
    return {"seconds": statistics.median(per_run), "runs": per_run,
            "sent": [r["sent"] for r in results]}  # fmt: skip


def prepare(args, job_dir: Path):
    """Profile the program in one process, then compile it and share its inputs for ``n``
    processes; returns (report, number of parties)."""
    import jax
    import numpy as np
    import spu.api as spu_api
    from spu import spu_pb2

    from ppml_torch.apps import profile_presets as presets
    from ppml_torch.runners import open_session
    from ppml_torch.runners.compile import compile_for_spu
    from ppml_torch.runners.config import resolve, spu_runtime_config

    if args.program == "homework":
        program = presets.homework_step()
    else:
        gpt, desc = presets.gpt2_module(args.layers, args.width, args.heads)
        program = presets.gpt2_decode_step(gpt, desc)
    with open_session("spu", args.protocol) as s:
        report = presets.profile_program(s, program, repeats=args.repeats)
        parties = s.parties
    cfg = resolve("spu", args.protocol, None)
    rc = spu_runtime_config(cfg, profile=True)
    n = len(parties)
    vis = ["public" if o == presets.PUBLIC else "secret" for o in program.owners]
    compiled = compile_for_spu(program.fn, list(program.inputs), vis, name="bench")
    io = spu_api.Io(n, rc)
    shares: list[dict] = [{} for _ in range(n)]
    names, i = [], 0
    for value, owner in zip(program.inputs, program.owners, strict=True):
        for leaf in jax.tree_util.tree_leaves(value):
            v = (spu_pb2.Visibility.VIS_PUBLIC if owner == presets.PUBLIC
                 else spu_pb2.Visibility.VIS_SECRET)  # fmt: skip
            rank = -1 if owner == presets.PUBLIC else int(owner)
            for r, share in enumerate(io.make_shares(np.asarray(leaf), v, rank)):
                shares[r][f"in{i}"] = (share.meta, list(share.share_chunks))
            names.append(f"in{i}")
            i += 1
    outs = [f"out{k}" for k in range(len(jax.tree_util.tree_leaves(compiled.out_struct)))]
    exe = spu_pb2.ExecutableProto(
        name="bench", input_names=names, output_names=outs, code=compiled.code
    )
    job = {"parties": list(parties), "runtime_config": rc.SerializeToString(),
           "executable": exe.SerializeToString(), "shares": shares}  # fmt: skip
    (job_dir / "job.pkl").write_bytes(pickle.dumps(job))
    return report, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--program", choices=("homework", "gpt2"), default="homework")
    p.add_argument("--protocol", default="SEMI2K")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--delay", type=float, default=-1.0, help=argparse.SUPPRESS)  # <0: no relay
    a = p.parse_args(argv)
    if a.child is not None:
        child(a.child, Path(a.job), a.delay)
        return 0
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces and tc)")
    job_dir = Path(tempfile.mkdtemp(prefix="ppml-torch-bench-network-"))
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(job_dir)  # SPU's log of the profile goes there too
    tempfile.tempdir = None
    n = 0
    try:
        report, n = prepare(a, job_dir)
        print(report.describe(top=8))
        print()
        namespaces = any(SETTINGS[s][0] for s in a.settings)
        if namespaces:
            remove_namespaces(n)
            make_namespaces(n)
        base: dict[tuple[bool, bool], float] = {}
        print(f"{a.program} ({a.protocol}): one run, slowest party, median of {a.repeats}; "
              f"one process: {report.total_seconds:.3f} s")  # fmt: skip
        head = f"{'setting':<9} {'link':<36} {'measured':>9} {'estimate':>9} {'est.+base':>9}"
        print(head)
        print("-" * len(head))
        for name in a.settings:
            in_ns, bw, rtt = SETTINGS[name]
            if in_ns:
                limit(n, bw)
            m = run_setting(job_dir, n, in_ns, rtt, a.repeats)
            est = report.estimate(bw or 1e15, rtt or 0.0)
            family = (in_ns, rtt is None or rtt > 0)  # namespaces?, through the relay?
            if bw is None and not rtt:
                base[family] = m["seconds"]
            b = base.get(family)
            net = est.terms.transfer_s + est.terms.latency_s
            plus = f"{b + net:>8.3f}s" if b is not None else f"{'-':>9}"
            link = ("namespaces, " if in_ns else "loopback, ") + (
                f"{bw / 1e6:g} Mbit/s, " if bw else "") + (
                f"rtt {rtt * 1e3:g} ms" if rtt is not None else "relay, no delay")  # fmt: skip
            print(f"{name:<9} {link:<36} {m['seconds']:>8.3f}s {est.seconds:>8.3f}s {plus}",
                  flush=True)  # fmt: skip
    finally:
        if n:
            remove_namespaces(n)
        if old_tmp is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmp
        shutil.rmtree(job_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
