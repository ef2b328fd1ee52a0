"""Starting and stopping this party's SecretFlow runtime in production mode (no Ray).

:class:`PartyRuntime` takes a party from nothing to a running SPU device in four steps that
the session calls in order: construction (SecretFlow imported, the patches checked, native
logs redirected, the :class:`~.supervision.Supervisor` started), :meth:`~PartyRuntime.connect`
(``sf.init``: the cross-silo channel, waiting for every party), :meth:`~PartyRuntime.
check_agreement` (every party's cluster file and settings), :meth:`~PartyRuntime.start_spu`
(the SPU link).  :meth:`~PartyRuntime.close` ends it: a barrier, then ``sf.shutdown`` with the
closing handshake of :func:`~.patches.links_stopped_then_linger`.  :meth:`~PartyRuntime.abort`
ends a start-up that failed: parties that disagree close together like that (each names the
difference, exit code 2, within seconds); after a lost party there is nothing to close.

The party's temporary folder (:mod:`.scratch`: SPU's log) is removed on close; a failure
whose cause may be in this party's own logs keeps them there and names the folder.

Ray is not used (``ray_mode=False``): one process per party, against a dozen processes, more
memory and slower start-up and SPU calls with a Ray per party (measured side by side:
``bench/bench_ray_mode.py``, figures in bench/README.md); Ray only pays off when a party
spreads its own work over a Ray cluster (not something ppml-torch does: the heavy work is
SPU's, in SPU's own threads).  The cross-silo channel is ``brpc_link``: its
``recv_timeout_ms`` bounds every wait for another party (with ``grpc`` a wait for another
party's result hangs forever when that party dies).
"""

from __future__ import annotations

import os
from typing import Any

from ..config import ConfigError, SessionConfig
from . import devices, patches, scratch
from .cluster import Cluster
from .failures import Failures, PartyLostError
from .logs import NativeLogs, SpuLogs, keep_log, quiet
from .supervision import Supervisor, install_sigint_handler


class PartyRuntime:
    """This party's SecretFlow runtime: the module ``sf``, the ``pyus``, the ``spu`` device,
    this party's ``rank`` in it, its SPU log (``logs``, in ``folder``) and what watches it
    all.  ``started``: a runtime was started in this process (its links' threads outlive it:
    the command line ends such a process with ``os._exit``, :func:`ppml_torch.cli.main`)."""

    started = False

    def __init__(self, cluster: Cluster, party: str):
        self.cluster = cluster
        self.party = party
        self.bounds = devices.LinkBounds.of(cluster)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        with quiet():
            import secretflow as sf

            patches.check(patches.PRODUCTION)  # one line, before anything connects
        self.sf = sf
        self.pyus: dict[str, Any] = {}
        self.spu: Any = None
        self.rank = -1
        self.connected = False
        self.folder = scratch.make_dir(f"party-{party}")
        self.logs = SpuLogs(None, {})
        self.native = NativeLogs()
        self.supervisor = Supervisor(cluster, party, self.native.console_stderr, self.keep_logs)
        self.failures = Failures(cluster, party, self.supervisor.lost, self.keep_logs)
        self.supervisor.start()

    def keep_logs(self) -> str:
        """Keep this party's logs (SecretFlow's, brpc's and SPU's output) for debugging: the
        folder, named in the one-line error."""
        keep_log(self.folder)
        return scratch.keep(self.folder)

    def connect(self) -> None:
        """``sf.init``: the cross-silo channel, once every party's is up."""
        tls = devices.cross_silo_tls(self.cluster, self.party)
        PartyRuntime.started = True  # from here on native link threads may run
        with self.failures.guard("start-up (waiting for the other parties to connect)", True):
            with quiet(), patches.cross_silo_link(self.bounds.silo_ms, tls is not None):
                self.sf.init(
                    address="local",
                    cluster_config=devices.cross_silo_cluster(self.cluster, self.party),
                    ray_mode=False,
                    cross_silo_comm_backend="brpc_link",
                    cross_silo_comm_options=dict(
                        self.bounds.options, recv_timeout_ms=self.bounds.silo_ms
                    ),
                    tls_config=tls,
                    logging_level="error",
                    enable_waiting_for_other_parties_ready=True,
                )
        self.connected = True
        install_sigint_handler(lambda exc: self.failures.error("a transfer to another party", exc))
        self.pyus = devices.pyus(self.sf, self.cluster.names)

    def check_agreement(self, config: SessionConfig) -> None:
        """Every party's cluster file and session settings must agree (one line if not)."""
        mine = {
            "parties": [[p.name, p.address, p.spu_address] for p in self.cluster.parties],
            "protocol": config.protocol,
            "field": config.field,
        }
        objs = {p: self.pyus[p](lambda: mine, num_returns=1)() for p in self.cluster.names}
        with self.failures.guard("start-up (comparing cluster files)", start=True):
            seen = self.sf.reveal(objs)
        for p, theirs in seen.items():
            for key in ("protocol", "field"):
                if theirs[key] != mine[key]:
                    raise ConfigError(
                        f"party {p!r} runs with {key} {theirs[key]} but {self.party!r} with "
                        f"{mine[key]}; give every party the same cluster file and run spec"
                    )
            if theirs["parties"] != mine["parties"]:
                raise ConfigError(
                    f"the cluster files of parties {p!r} and {self.party!r} differ: "
                    f"{_first_difference(theirs['parties'], mine['parties'], p, self.party)}; "
                    "give every party the same cluster file"
                )

    def start_spu(self, config: SessionConfig, profile: bool) -> None:
        """The SPU device; returns once this party's SPU link is connected."""
        self.logs = SpuLogs(self.folder if profile else None, {self.party: "spu.log"})
        with self.failures.guard("start-up (SPU link)"):
            self.spu = devices.production_spu(
                self.cluster, self.party, config, profile, self.logs, self.bounds
            )
            # this party's SPU runtime connects its link in a worker thread: wait for it here,
            # so that start-up (and its bound) includes it
            self.spu.actors[self.party]._cls_fed_obj.get_object()
        self.rank = [n["party"] for n in self.spu.cluster_def["nodes"]].index(self.party)

    def close(self) -> None:
        """End the runtime: after a barrier (nobody stops its links while another party still
        reads from them), ``sf.shutdown`` with the links' closing handshake; then the
        temporary folder goes.  After a lost party there is nothing to close: the process ends
        (:func:`~.supervision.exit_at_shutdown`)."""
        try:
            if not self.failures.lost:
                bye = {p: self.pyus[p](lambda: 0, num_returns=1)() for p in self.cluster.names}
                with self.failures.guard("closing (waiting for the other parties to finish)"):
                    self.sf.reveal(bye)
                self.supervisor.closing()
                # the watchdog stays on during the handshake: a party lost now is still named
                with quiet(), patches.links_stopped_then_linger():
                    self.sf.shutdown()
                self.supervisor.stop()
                self.native.restore()
                scratch.remove(self.folder)
        finally:
            self.supervisor.stop()

    def abort(self, error: BaseException) -> None:
        """Start-up failed with ``error`` (the caller raises it).  Parties that disagree
        (a :class:`ConfigError` after connecting: each of them found it) close together, so
        that every party gets to say it; a lost party leaves nothing to close; anything else
        (^C) leaves the runtime as it is.  The process ends once its main program is done."""
        if isinstance(error, PartyLostError) or self.failures.lost:
            return  # the process ends with exit code 3; the janitor removes the folder
        if isinstance(error, ConfigError) and self.connected:
            self.supervisor.ending(str(error))
            try:
                self.close()
            except Exception:  # noqa: BLE001 - a party lost while closing: error says enough
                pass
            return
        if isinstance(error, KeyboardInterrupt):
            code = 130  # as shells say for ^C
        else:
            code = 2 if isinstance(error, ConfigError) else 1
        self.supervisor.lost(code)  # SecretFlow's threads may be half started: end at exit
        self.native.restore()
        if not self.connected:
            scratch.remove(self.folder)  # nothing of SPU's writes there yet


def _first_difference(theirs: list[list[str]], mine: list[list[str]], p: str, me: str) -> str:
    """The first party whose name or addresses two cluster files give differently."""
    for t, m in zip(theirs, mine, strict=False):
        if t != m:
            return f"{t[0]} at {t[1]}, SPU {t[2]} in {p}'s, {m[0]} at {m[1]}, SPU {m[2]} in {me}'s"
    return f"{len(theirs)} parties in {p}'s, {len(mine)} in {me}'s"
