"""SecretFlow in production (multi-controller) mode: this process is ONE party.

Every party runs the same program, each in its own process (on its own machine), with the same
cluster file (see :mod:`ppml_torch.runners.cluster`) and its own ``party=``.  What differs from
the one-process backends:

* ``put(value, owner=p)`` takes the value only in ``p``'s process.  Elsewhere pass a shape-only
  placeholder (a pytree of ``jax.ShapeDtypeStruct``), or a loader (a callable with no arguments,
  called only in ``p``'s process).  The owner announces the value's shapes and dtypes (public
  metadata, as in every ``Handle``) and each other party checks its placeholder against them.
  A public value (``owner='public'``) is taken from the first party of the cluster file.
* ``reveal(h, to=p)`` returns the value in ``p``'s process and ``None`` in every other one; the
  shares travel to ``p`` only.  (SecretFlow's own ``sf.reveal`` would not do that: on an object
  that lives at ``p``, it sends the value to every other party.  Here ``p`` reads its own
  object locally.)  ``reveal(h)`` without ``to`` gives the value to every party.
* Run reports and communication figures are this party's own.

Ray is not used (``ray_mode=False``): one process of about 450 MB per party, ``sf.init`` in
1-4 s, against 12-13 processes, 2.4-2.8 GB, ``sf.init`` in 10-15 s and SPU calls 2.4-4.4x slower
per party with a Ray per party (``bench/bench_ray_mode.py``), which only pays off when a party
spreads its own work over a Ray cluster (not something ppml-torch does: the heavy work is SPU's,
in SPU's own threads).  The cross-silo channel is ``brpc_link``:
its ``recv_timeout_ms`` bounds every wait for another party (with ``grpc`` a wait for another
party's result hangs forever when that party dies).

Bounds: a party whose process is gone (its ports closed) is named within ``timeout_s`` by a
watchdog thread, whatever the main thread waits for.  A party that is alive but stalled is
caught by the receive timeouts: ``timeout_s`` inside SPU ops, ``max(timeout_s,
start_timeout_s)`` on the cross-silo channel (it also carries legitimately long one-sided
waits: party 0 compiling an SPU program, a party loading its data, start-up).

A party that stops answering (dies, is killed, loses its network) makes every other party
raise :class:`PartyLostError` naming it within the cluster file's ``timeout_s`` (default 30 s),
whatever it was waiting for (an SPU op, a PYU result, a reveal, start-up).  After that the
SecretFlow runtime of this process is unusable: the command line ends the process at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from ..dtypes import jax_dtype_name
from .base import PUBLIC, SECRET, Event, Handle, RunReport, Session
from .cluster import Cluster, PartyLostError, check_party, reachable
from .comm import CommStats, link_totals
from .config import ConfigError, SessionConfig, spu_runtime_config_dict
from .secretflow import _quiet


class NotRevealedHere:
    """Falsy marker some callers may prefer over ``None``; not returned by default."""


class _NativeLogs:
    """Native (brpc/SPU) log lines go to SecretFlow's log file, not the user's console.

    brpc writes to file descriptor 2 from its own threads; Python's ``redirect_stderr`` does
    not reach it.  While the session is open, descriptors 1 and 2 point at the log file and
    ``sys.stdout``/``sys.stderr`` write to copies of the original descriptors.
    """

    def __init__(self) -> None:
        import sys

        from .secretflow import _log_file

        log = _log_file()
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self._py = (sys.stdout, sys.stderr)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = open(os.dup(self._saved[0]), "w", buffering=1)  # noqa: SIM115
        sys.stderr = open(os.dup(self._saved[1]), "w", buffering=1)  # noqa: SIM115
        self.path = getattr(log, "name", None)

    def restore(self) -> None:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        sys.stdout, sys.stderr = self._py


_STARTUP_GUARD = """
import os, signal, sys, time
parent, limit, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
end = time.monotonic() + limit
import select
while time.monotonic() < end:
    r, _, _ = select.select([sys.stdin], [], [], max(0.0, end - time.monotonic()))
    if r:
        sys.exit(0)  # start-up finished (or the parent ended): nothing to do
try:
    os.kill(parent, 0)
except OSError:
    sys.exit(0)
sys.stderr.write("ppml-torch: " + message + "\\n")
sys.stderr.flush()
os.kill(parent, signal.SIGKILL)
"""


def _startup_guard(limit_s: float, message: str, stderr_fd: int) -> Any:
    """A tiny process that kills this one, with ``message``, if start-up takes longer than
    ``limit_s``.  A thread cannot do it: brpc's TLS handshake waits inside a native call that
    holds the GIL.  Closing the returned process's stdin tells it start-up is done."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-S", "-c", _STARTUP_GUARD, str(os.getpid()), str(limit_s), message],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=stderr_fd,
    )


def _slow_retries(desc: Any, timeout_ms: int) -> None:
    """A failing send (the peer is gone) keeps being retried, once a second, for three times
    the bound.

    yacl's link ends the whole process (exit code 255, no message) when an asynchronous send
    has used up its retries (default: 3 within about 15 s).  Retrying for longer lets the
    watchdog or the receive timeout give the user the one-line error first; retrying every
    second keeps start-up quick (the first handshake is retried until the peer listens).
    """
    r = desc.retry_opts
    r.max_retry = 3 * max(1, timeout_ms // 1000) + 1
    r.retry_interval_ms = 1000
    r.retry_interval_incr_ms = 0
    r.max_retry_interval_ms = 1000


def _runtime_class(timeout_ms: int) -> type:
    """SecretFlow's SPURuntime, with the link's send retries of :func:`_slow_retries`."""
    import json

    import spu
    import spu.libspu.link as spu_link
    import spu.libspu.logging as spu_logging
    from google.protobuf import json_format
    from secretflow.device.device.spu import SPURuntime, _fill_link_desc_attrs

    class _Runtime(SPURuntime):
        def __init__(self, rank, cluster_def, link_desc=None, log_options=None, id=None):  # noqa: A002
            # SPURuntime.__init__ of secretflow 1.11.0b1, plus the retry options
            spu_logging.setup_logging(log_options or spu_logging.LogOptions())
            self.rank = rank
            self.cluster_def = cluster_def
            desc = spu_link.Desc()
            tls_opts = None
            for i, node in enumerate(cluster_def["nodes"]):
                address = node["address"]
                if i == rank:
                    self.party = node["party"]
                    tls_opts = node.get("tls_opts", None)
                    if node.get("listen_address", ""):
                        address = node["listen_address"]
                desc.add_party(node["party"], address)
            _fill_link_desc_attrs(link_desc=link_desc, tls_opts=tls_opts, desc=desc)
            _slow_retries(desc, timeout_ms)
            self.link = spu_link.create_brpc(desc, rank)
            self.conf = json_format.Parse(
                json.dumps(cluster_def["runtime_config"]), spu.RuntimeConfig()
            )
            self.runtime = spu.Runtime(self.link, self.conf)
            self.share_seq_id = 0
            self.id = id

    return _Runtime


LINGER_S = 1.0  # after the closing handshake, how long a party keeps answering the others


@contextlib.contextmanager
def _links_stopped_then_linger() -> Iterator[None]:
    """``sf.shutdown`` with the cross-silo link closed by yacl's handshake, then kept up a moment.

    yacl acknowledges every message it receives with a message of its own, sent asynchronously,
    and its ``stop_link`` is the closing handshake that waits for all of them (each party sends
    FIN with its message count, waits for every peer's messages and FIN, for its own sends to be
    delivered and for the acknowledgements of its own messages).  Afterwards this party sends
    nothing more; but its server must still answer the peers' last requests (their FIN, their
    last acknowledgement): closing it right away cuts those answers off, the peer retries a
    send that nobody answers, and a process that exits while such a send task runs crashes in
    brpc/yacl's threads during C++ static destruction (SIGSEGV in spdlog, 2 of 20 three-party
    launches on a loaded machine when the link was dropped without the handshake).  So: the
    handshake, then ``LINGER_S`` with the server up, then the link is released.
    """
    from secretflow.distributed.fed.proxy.brpc_link.brpc_link import BrpcLinkProxy

    orig = BrpcLinkProxy.stop

    def stop(proxy: Any) -> None:
        if proxy._linker is not None:
            proxy._linker.stop_link()
            time.sleep(LINGER_S)
            proxy._linker = None

    BrpcLinkProxy.stop = stop
    try:
        yield
    finally:
        BrpcLinkProxy.stop = orig


@contextlib.contextmanager
def _cross_silo_retries(timeout_ms: int, tls: bool) -> Iterator[None]:
    """:func:`_slow_retries` for SecretFlow's cross-silo brpc link, created inside sf.init.

    With ``tls``, also turn SSL on: secretflow 1.11.0b1's brpc_link proxy fills the link's
    certificate options from ``tls_config`` but never sets ``enable_ssl``, so the channel ran
    in plaintext and a party with a certificate of another CA was accepted (measured).
    """
    from secretflow.distributed.fed.proxy.brpc_link.brpc_link import BrpcLinkProxy

    orig = BrpcLinkProxy.start

    def start(proxy: Any) -> Any:
        _slow_retries(proxy._desc, timeout_ms)
        if tls:
            proxy._desc.enable_ssl = True
        return orig(proxy)

    BrpcLinkProxy.start = start
    try:
        yield
    finally:
        BrpcLinkProxy.start = orig


def _exit_at_shutdown() -> None:
    """After a lost party, SecretFlow's worker threads may wait in native code and keep the
    interpreter from ending; end it (code 1, after flushing) when the main program is done."""

    def bye() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    threading._register_atexit(bye)  # type: ignore[attr-defined]  # runs before thread joins


def _structure(value: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), value)


def _declared(value: Any) -> Any:
    """Shapes and (32-bit) dtypes of an array pytree or a ShapeDtypeStruct pytree."""

    def one(a: Any) -> jax.ShapeDtypeStruct:
        if isinstance(a, jax.ShapeDtypeStruct):
            dt = np.dtype(a.dtype)
        else:
            a = np.asarray(a) if not hasattr(a, "shape") else a
            dt = np.dtype(a.dtype)
        return jax.ShapeDtypeStruct(tuple(a.shape), np.dtype(jax_dtype_name(dt)))

    return jax.tree_util.tree_map(one, value)


class ProductionSession(Session):
    """One party of a multi-process SecretFlow job (see the module docstring)."""

    _active: ProductionSession | None = None

    def __init__(
        self, config: SessionConfig, cluster: Cluster, party: str, *, profile: bool = True
    ):
        if ProductionSession._active is not None:
            raise RuntimeError(
                "a SecretFlow session is already open in this process; close it first"
            )
        me = check_party(cluster, party)  # ports free, party listed: before anything connects
        super().__init__(config)
        self.cluster = cluster
        self.party = party
        self._me = me
        self._lost = False
        self._objects: dict[int, Any] = {}
        t0 = time.perf_counter()
        timeout_ms = int(cluster.timeout_s * 1000)
        # The cross-silo channel also carries one-sided waits: the other parties wait there
        # while party 0 compiles an SPU program or a party loads its data, and the link's
        # first handshake waits for the slowest party's start-up.  It gets the longer bound;
        # a party that dies is caught within timeout_s by the watchdog (ports closed).
        silo_ms = int(max(cluster.timeout_s, cluster.start_timeout_s) * 1000)
        retries = max(1, int(cluster.start_timeout_s))  # one connection attempt per second
        link_opts = {
            "recv_timeout_ms": timeout_ms,
            "connect_retry_times": retries,
            "connect_retry_interval_ms": 1000,
        }
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        tls_config = None
        if cluster.tls is not None:
            t = cluster.tls[party]
            tls_config = {"ca_cert": t.ca_cert, "cert": t.cert, "key": t.key}
        with _quiet():
            import secretflow as sf
            from secretflow.distributed import primitive as sfd
            from spu import libspu
        self._sf = sf
        sf_cluster = {
            "parties": {
                p.name: {"address": p.address, "listen_addr": p.listen_address("address")}
                for p in cluster.parties
            },
            "self_party": party,
        }
        self._native = _NativeLogs()
        hint = (
            "; with tls, check that every party's certificate is signed by the ca_cert of the "
            "cluster file"
            if cluster.tls
            else ""
        )
        self._guard_proc = _startup_guard(
            cluster.start_timeout_s + cluster.timeout_s,
            f"party {party}: start-up did not finish within "
            f"{cluster.start_timeout_s + cluster.timeout_s:g} s (start_timeout_s + timeout_s)"
            f"{hint}; every party must run the same program with the same cluster file",
            self._native._saved[1],
        )
        # a party seen listening and then gone is named within timeout_s, from here on; and
        # start-up as a whole ends by start_timeout_s + timeout_s (a TLS handshake between
        # certificates of different CAs waits forever in brpc, with every port open)
        self._startup_deadline: float | None = (
            time.monotonic() + cluster.start_timeout_s + cluster.timeout_s
        )
        self._watch_stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="ppml-party-watch")
        self._watchdog.start()
        with self._guard("start-up (waiting for the other parties to connect)", start=True):
            with _quiet(), _cross_silo_retries(silo_ms, tls_config is not None):
                sf.init(
                    address="local",
                    cluster_config=sf_cluster,
                    ray_mode=False,
                    cross_silo_comm_backend="brpc_link",
                    cross_silo_comm_options=dict(link_opts, recv_timeout_ms=silo_ms),
                    tls_config=tls_config,
                    logging_level="error",
                    enable_waiting_for_other_parties_ready=True,
                )
        self._install_signal_handler()
        ProductionSession._active = self

        self._pyus = {p: sf.PYU(p) for p in cluster.names}
        self._check_agreement()
        self._log_dir = tempfile.mkdtemp(prefix="ppml-torch-sfp-") if profile else None
        log_dir = self._log_dir
        runtime_cls = _runtime_class(timeout_ms)
        spu_tls = None
        if cluster.tls is not None:
            t = cluster.tls[party]
            ssl = {
                "certificate_path": t.cert,
                "private_key_path": t.key,
                "ca_file_path": t.ca_cert,
                "verify_depth": 1,
            }
            spu_tls = {"server_ssl_opts": ssl, "client_ssl_opts": ssl}

        class _SPU(sf.SPU):
            """SecretFlow's SPU device with this party's SPU log in a file (communication)."""

            def init(self) -> None:
                for rank, node in enumerate(self.cluster_def["nodes"]):
                    opts = libspu.logging.LogOptions()
                    if log_dir is not None:
                        opts.enable_console_logger = False
                        opts.system_log_path = os.path.join(log_dir, "spu.log")
                    self.actors[node["party"]] = (
                        sfd.remote(runtime_cls)
                        .party(node["party"])
                        .remote(rank, self.cluster_def, self.link_desc, opts, self.id)
                    )

        nodes = []
        for p in cluster.parties:
            node = {"party": p.name, "address": p.spu_address}
            if p.name == party:
                node["listen_address"] = p.listen_address("spu_address")
                if spu_tls:
                    node["tls_opts"] = spu_tls
            nodes.append(node)
        spu_cluster = {
            "nodes": nodes,
            "runtime_config": spu_runtime_config_dict(config, profile=profile),
        }
        with self._guard("start-up (SPU link)"):
            # brpc's own protocol instead of the default HTTP: the homework's later epochs took
            # 3.9 s instead of 5.4 s between two processes here (SPU's thousands of small
            # messages per epoch are latency-bound)
            self._spu = _SPU(
                spu_cluster, link_desc=dict(link_opts, brpc_channel_protocol="baidu_std")
            )
            # this party's SPU runtime connects its link in a worker thread: wait for it here,
            # so that start-up (and its bound) includes it
            self._spu.actors[party]._cls_fed_obj.get_object()
        self._rank = [n["party"] for n in self._spu.cluster_def["nodes"]].index(party)
        self.startup_s = time.perf_counter() - t0
        self._startup_deadline = None
        self._end_guard()

    def _end_guard(self) -> None:
        proc = getattr(self, "_guard_proc", None)
        if proc is not None:
            self._guard_proc = None
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - it ends by itself at its deadline anyway
                pass

    def _watch(self) -> None:
        """Ends this process with the one-line error when another party's ports stay closed
        for ``timeout_s``, whatever the main thread waits for (SecretFlow and SPU may wait in
        native code, or end the process without a word)."""
        gone: dict[str, float] = {}
        seen: set[str] = set()  # parties that started: before that, start_timeout_s applies
        while not self._watch_stop.wait(1.0):
            now = time.monotonic()
            deadline = self._startup_deadline
            if deadline is not None and now > deadline and not self._watch_stop.is_set():
                c = self.cluster
                hint = (
                    "; with tls, check that every party's certificate is signed by the "
                    "ca_cert of the cluster file"
                    if c.tls
                    else ""
                )
                missing = self._missing()
                if missing:
                    self._die(
                        f"party {', '.join(missing)} did not start within "
                        f"{c.start_timeout_s + c.timeout_s:g} s (start_timeout_s + timeout_s); "
                        "start every party with the same cluster file"
                    )
                self._die(
                    f"start-up did not finish within {c.start_timeout_s + c.timeout_s:g} s "
                    f"(start_timeout_s + timeout_s) though every party's ports answer"
                    f"{hint}; every party must run the same program with the same cluster file"
                )
            for p in self.cluster.parties:
                if p.name == self.party:
                    continue
                if reachable(p.address) or reachable(p.spu_address):
                    seen.add(p.name)
                    gone.pop(p.name, None)
                    continue
                if p.name not in seen:
                    continue
                since = gone.setdefault(p.name, now)
                if now - since >= self.cluster.timeout_s and not self._watch_stop.is_set():
                    self._die(
                        f"party {p.name} stopped answering: nothing listened on its ports "
                        f"({p.address}, {p.spu_address}) for {self.cluster.timeout_s:g} s "
                        "(timeout_s); check that it runs (its own output says why it stopped)"
                    )

    def _die(self, msg: str) -> None:
        """The one-line error, then end the process (exit code 3) from the watchdog thread.

        Written to the original standard error: the main thread may be inside ``_quiet``."""
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.write(self._native._saved[1], f"ppml-torch: {msg}\n".encode())
        os._exit(3)

    # -- failure handling ----------------------------------------------------------------------
    def _missing(self) -> list[str]:
        return [
            p.name
            for p in self.cluster.parties
            if p.name != self.party and not (reachable(p.address) or reachable(p.spu_address))
        ]

    def _lost_error(
        self, what: str, cause: BaseException | None, start: bool = False
    ) -> PartyLostError:
        """One line for a failure of the multi-party runtime: who is gone, or what failed."""
        self._end_guard()
        if not self._lost:
            _exit_at_shutdown()
        self._lost = True
        if hasattr(self, "_watch_stop"):
            self._watch_stop.set()  # the caller gets the error; the runtime is unusable now
        missing = self._missing()
        limit = self.cluster.start_timeout_s if start else self.cluster.timeout_s
        wait = f"within {limit:g} s ({'start_timeout_s' if start else 'timeout_s'})"
        if missing:
            who = ", ".join(missing)
            verb = "did not start" if start else "stopped answering"
            return PartyLostError(
                f"party {who} {verb} during {what}: no reply {wait} and nothing listens on its "
                "ports; check that it runs (its own output says why it stopped)"
            )
        inner = getattr(cause, "_cause", None) or cause
        text = " ".join(str(inner).split()) if inner is not None else "no reply"
        text = text.removeprefix("what:").strip()
        src = getattr(cause, "_src_party", None)
        if src is not None:
            return PartyLostError(f"party {src} failed during {what}: {text[:200]}")
        low = text.lower()
        if any(k in low for k in ("timeout", "timed out", "connect", "closed", "eof")):
            others = [p for p in self.parties if p != self.party]
            who = f"party {others[0]}" if len(others) == 1 else "another party"
            detail = (
                text[text.lower().find("timeout") - 10 :][:120] if "timeout" in low else text[:120]
            )
            return PartyLostError(
                f"no reply from {who} during {what} {wait}, though its ports are open (stalled, "
                f"or a different program/cluster file?): {detail.strip()}"
            )
        return PartyLostError(
            f"{what} failed in party {self.party}: {type(inner).__name__}: {text[:200]}"
        )

    @contextlib.contextmanager
    def _guard(self, what: str, start: bool = False) -> Iterator[None]:
        if self._lost:
            raise PartyLostError("this session lost a party earlier; open a new one")
        try:
            yield
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as e:  # SecretFlow/SPU/brpc errors: translate into one line
            raise self._lost_error(what, e, start) from e

    def _install_signal_handler(self) -> None:
        """SecretFlow's sender thread ends the process (SIGINT -> os._exit(1), no message)
        when a send fails; turn that into :class:`PartyLostError` in the main thread."""
        from secretflow.distributed.fed.global_context import get_global_context

        def handler(signum: int, frame: Any) -> None:
            ctx = get_global_context(assert_none=False)
            exc = ctx.get_last_exception() if ctx is not None else None
            if exc is None:
                raise KeyboardInterrupt
            raise self._lost_error("a transfer to another party", exc)

        signal.signal(signal.SIGINT, handler)

    def _check_agreement(self) -> None:
        """Every party's cluster file and session settings must agree (one line if not)."""
        mine = {
            "parties": [[p.name, p.address, p.spu_address] for p in self.cluster.parties],
            "protocol": self.config.protocol,
            "field": self.config.field,
        }
        objs = {p: self._pyus[p](lambda: mine, num_returns=1)() for p in self.cluster.names}
        with self._guard("start-up (comparing cluster files)", start=True):
            seen = self._sf.reveal(objs)
        for p, theirs in seen.items():
            for key in ("protocol", "field", "parties"):
                if theirs[key] != mine[key]:
                    raise ConfigError(
                        f"party {p!r} runs with {key} {theirs[key]} but {self.party!r} with "
                        f"{mine[key]}; give every party the same cluster file and run spec"
                    )

    # -- values --------------------------------------------------------------------------------
    @property
    def local_parties(self) -> tuple[str, ...]:
        return (self.party,)

    def announce(self, fn: Callable[[str], Any]) -> dict[str, Any]:
        """``fn(party)`` runs in ``party``'s process only; every party gets every result."""
        self._check_open()

        def one(party: str) -> Callable[[], Any]:
            def announced() -> Any:
                return fn(party)

            return announced

        objs = {p: self._pyus[p](one(p), num_returns=1)() for p in self.parties}
        with self._guard("announcing public metadata (shapes)"):
            return dict(self._sf.reveal(objs))

    def put(self, value: Any, owner: str | None, visibility: str | None = None) -> Handle:
        """``value`` in the owner's process; a ShapeDtypeStruct pytree or a loader elsewhere."""
        self._check_open()
        visibility, owner = self._check_owner(owner, visibility, "put")
        src = owner if visibility == SECRET else self.parties[0]
        label = owner if visibility == SECRET else PUBLIC
        t0 = time.perf_counter()
        struct = None
        if src == self.party:
            if callable(value):
                value = value()
            for x in jax.tree_util.tree_leaves(value):
                if isinstance(x, jax.ShapeDtypeStruct):
                    raise ConfigError(
                        f"put(owner={label}): party {self.party!r} owns this value but passed a "
                        "shape-only placeholder; pass the data (or a loader) in the owner's process"
                    )
            # the owner-side checks of every session (NaN/inf, range, lossy casts), here only
            arrays, treedef = self._check_value(value, label)
            value = jax.tree_util.tree_unflatten(treedef, arrays)
            struct = _structure(value)
        elif not callable(value):
            if not jax.tree_util.tree_leaves(value):
                raise ValueError("put: the placeholder has no arrays in it")
        announced = self._pyus[src](lambda: struct, num_returns=1)()
        with self._guard(f"put(owner={label}) (waiting for {src}'s shapes)"):
            struct_all = self._sf.reveal(announced)  # public metadata, as in every Handle
        if src != self.party and not callable(value):
            declared = _declared(value)
            if jax.tree_util.tree_structure(declared) != jax.tree_util.tree_structure(
                struct_all
            ) or jax.tree_util.tree_leaves(declared) != jax.tree_util.tree_leaves(struct_all):
                raise ConfigError(
                    f"put(owner={label}): this party's placeholder {_short(declared)} differs from "
                    f"what {src} put in, {_short(struct_all)}; describe the owner's data exactly"
                )
        data = self._pyus[src](lambda: value, num_returns=1)()
        leaves, treedef = jax.tree_util.tree_flatten(struct_all)
        avals = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves)
        handle = Handle(self.id, next(self._keys), treedef, avals, owner, visibility)
        with self._guard(f"put(owner={label})"):
            if visibility == PUBLIC:
                obj = data.to(self._spu, spu_vis="public")
            else:
                obj = data.to(self._spu)
        self._objects[handle.key] = obj
        self._live.add(handle.key)
        self._record(RunReport("secretflow", f"put #{handle.key}", 0.0, time.perf_counter() - t0))
        self.record.append(Event("put", handle, owner, time.time()))
        return handle

    def _put(self, handle: Handle, arrays: list[np.ndarray]) -> None:  # put() is overridden
        raise NotImplementedError

    def _wait_own_share(self, obj: Any) -> None:
        """Wait until this party's share of an SPU result exists (nothing is sent)."""
        share = obj.shares_name[self._rank]
        share.get_object() if hasattr(share, "get_object") else None

    def _call(
        self, fn: Callable[..., Any], args: Sequence[Handle], name: str
    ) -> tuple[Handle, RunReport]:
        out_struct = jax.eval_shape(fn, *[a.structure for a in args])
        handle = self._new_handle(out_struct)
        mark = self._log_mark()
        t0 = time.perf_counter()
        with self._guard(f"SPU op {name}"):
            out = self._spu(fn)(*[self._objects[a.key] for a in args])
            self._wait_own_share(out)
        run_s = time.perf_counter() - t0
        self._objects[handle.key] = out
        return handle, RunReport("secretflow", name, None, run_s, self._comm_since(mark))

    def reveal(self, handle: Handle, to: str | None = None) -> Any:
        """The value in ``to``'s process (every party's if ``to`` is None); ``None`` elsewhere."""
        value = super().reveal(handle, to)
        if to is not None and to != self.party:
            return None
        return value

    def _reveal(self, handle: Handle, to: str | None) -> list[Any]:
        obj = self._objects[handle.key]
        if to is None:
            with self._guard("reveal to every party"):
                value = self._sf.reveal(obj)
            return [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]
        with self._guard(f"reveal to {to}"):
            moved = obj.to(self._pyus[to])  # the shares go to `to` only, which reconstructs
            if to != self.party:
                return [None] * len(handle.avals)
            value = moved.data.get_object()  # read locally: sf.reveal would broadcast it
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]

    def _free(self, handle: Handle) -> None:
        self._objects.pop(handle.key, None)

    def _close(self) -> None:
        self._objects.clear()
        try:
            if not self._lost:
                # a barrier: nobody stops its links while another party still reads from them
                bye = {p: self._pyus[p](lambda: 0, num_returns=1)() for p in self.parties}
                with self._guard("closing (waiting for the other parties to finish)"):
                    self._sf.reveal(bye)
                # the watchdog stays on during the handshake: a party lost now is still named
                with _quiet(), _links_stopped_then_linger():
                    self._sf.shutdown()
                self._watch_stop.set()
                self._native.restore()
        finally:
            if hasattr(self, "_watch_stop"):
                self._watch_stop.set()
            ProductionSession._active = None

    # -- communication (this party's SPU log) ---------------------------------------------------
    def _log_mark(self) -> int:
        if self._log_dir is None:
            return 0
        path = os.path.join(self._log_dir, "spu.log")
        return os.path.getsize(path) if os.path.exists(path) else 0

    def _comm_since(self, mark: int) -> CommStats | None:
        if self._log_dir is None:
            return None
        path = os.path.join(self._log_dir, "spu.log")
        text = ""
        if os.path.exists(path):
            with open(path, "rb") as f:
                f.seek(mark)
                text = f.read().decode("utf-8", "replace")
        b, a = link_totals(text)
        return CommStats(b, a, {self.party: (b, a)})


def _short(struct: Any) -> str:
    leaves = jax.tree_util.tree_leaves(struct)
    s = ", ".join(f"{np.dtype(a.dtype).name}{list(a.shape)}" for a in leaves[:3])
    return f"[{s}{', ...' if len(leaves) > 3 else ''}]"


def open_production(
    backend: str,
    protocol: str | None,
    field: str | None,
    cluster: Any,
    party: str | None,
    parties: Sequence[str] | None,
    runtime: Any,
    profile: bool,
    ir: str,
) -> ProductionSession:
    """``open_session(..., cluster=, party=)``: every check before anything connects."""
    from .cluster import ClusterError, load_cluster
    from .config import resolve
    from .secretflow import check_importable

    if backend != "secretflow":
        raise ConfigError(
            f"cluster=/party= run one party per process and need backend 'secretflow', not "
            f"{backend!r} ({backend} runs every party in this one process)"
        )
    if cluster is None:
        raise ConfigError("party= needs cluster= (the cluster file every party uses)")
    if ir != "xla":
        raise ConfigError(f"ir={ir!r} applies to backend 'spu' only")
    cl = cluster if isinstance(cluster, Cluster) else load_cluster(cluster)
    if parties is not None and tuple(parties) != cl.names:
        raise ConfigError(
            f"parties={list(parties)} differ from the cluster file's {list(cl.names)}; drop parties="
        )
    for key, given, filed in (("protocol", protocol, cl.protocol), ("field", field, cl.field)):
        if given is not None and filed is not None and given.upper() != filed:
            raise ClusterError(
                f"{key} {given.upper()} differs from the cluster file's {filed} ({cl.path}); "
                "use the same on every party"
            )
    cfg = resolve("secretflow", protocol or cl.protocol, field or cl.field, cl.names, runtime)
    check_importable()
    return ProductionSession(cfg, cl, party or "", profile=profile)
