"""SecretFlow in simulation mode on Ray: data owners are ``PYU`` devices, computation runs on
an ``SPU`` device built from the session's protocol/field settings.

The session starts SecretFlow itself and stops it on close (one SecretFlow runtime per
process at a time).  Ray is given more logical CPUs than the machine has (on 2 cores,
``num_cpus=2`` deadlocks: the SPU actors wait for CPUs forever) and its log noise is kept off
the console.  Each party's SPU runtime logs to its own file, so communication is reported per
party.  Ray's session folder (sockets, logs: about 30 files) and those logs live in one
temporary folder of the session (:func:`.scratch.make_dir`), not in Ray's shared ``/tmp/ray``:
it is removed on close, and by the janitor when this process ends any other way (a killed
driver, whose Ray agents the janitor ends too).

Functions are compiled inside SecretFlow's workers, so they travel there pickled.  A
:class:`~ppml_torch.model.ConvertedModel` inside one (``cm.apply`` of ``fit``, ``predict``,
``generate``, a user's program) travels as its program only (:func:`ppml_torch.model.
shipping_state`): its weights as shapes and dtypes (the program takes them as an input; the
plaintext copy must not reach another party's process) and without torch's
``ExportedProgram`` (torch cannot unpickle it).  Calling such a model on its own weights
(``cm(x)``) inside a program is refused in one line; pass the weights as an input.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ..base import PUBLIC, Handle, RunReport, Session
from ..compile import folding
from ..config import ConfigError, SessionConfig
from . import devices, janitor, patches, scratch
from .logs import SpuLogs, quiet

RAY_LOGICAL_CPUS = 8
# the longest name Ray makes in its temporary folder, a socket whose path must fit in 107 bytes
# (ray/_private/node.py): "/session_<date>_<time>_<microseconds>_<pid>/sockets/plasma_store"
RAY_SOCKET = "/session_2026-12-07_11-28-53_720983_{pid}/sockets/plasma_store"


class SecretFlowSession(Session):
    _active: SecretFlowSession | None = None

    def __init__(self, config: SessionConfig, *, profile: bool = True):
        if SecretFlowSession._active is not None:
            raise RuntimeError(
                "a SecretFlow session is already open in this process; close it first "
                "(SecretFlow runs one runtime per process)"
            )
        super().__init__(config)
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # SecretFlow's objects free their shares when garbage-collected; one collected after
        # shutdown (e.g. held by a traceback) would make Ray start a new local cluster
        os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
        with quiet():
            import secretflow as sf

            patches.check(patches.SIMULATION)  # one line, before Ray starts
        self._folder = folder = scratch.make_dir("sim")
        try:
            _check_socket_room(folder)
            with quiet():
                logging.getLogger("ray").setLevel(logging.ERROR)
                sf.init(
                    parties=list(config.parties),
                    address="local",
                    num_cpus=RAY_LOGICAL_CPUS,
                    log_to_driver=False,
                    logging_level="error",
                    include_dashboard=False,
                    _temp_dir=folder,  # ray.init's: Ray's session folder in ours
                )
        except BaseException:
            _remove(folder)
            raise
        self._sf = sf
        try:
            patches.ship_models_as_programs(True)
            self._start_devices(config, profile)
        except BaseException:
            # Ray is up: stop it, or the process keeps a cluster nobody can reach or close.
            patches.ship_models_as_programs(False)
            with quiet():
                sf.shutdown()
            _remove(folder)
            raise
        self._objects: dict[int, Any] = {}
        self._shipped: dict[Any, Any] = {}  # one folded function per program: SF caches by it
        SecretFlowSession._active = self

    def _start_devices(self, config: SessionConfig, profile: bool) -> None:
        """PYUs and the SPU device (after ``sf.init``; the caller stops Ray if this fails)."""
        folder = self._folder if profile else None
        self._logs = SpuLogs(folder, {p: f"spu-{p}.log" for p in config.parties})
        with quiet():
            self._pyus = devices.pyus(self._sf, config.parties)
            self._spu = devices.simulation_spu(self._sf, config, profile, self._logs)

    # -- values --------------------------------------------------------------------------------
    def _put(self, handle: Handle, arrays: list[np.ndarray]) -> None:
        value = jax.tree_util.tree_unflatten(handle.treedef, arrays)
        if handle.visibility == PUBLIC:
            # A public value is known to everyone: it enters SPU as VIS_PUBLIC from the first party.
            src = self._pyus[self.parties[0]]
            obj = src(lambda v: v)(value).to(self._spu, spu_vis="public")
        else:
            # The owner's PYU holds the plaintext; only secret shares leave it.
            obj = self._pyus[handle.owner](lambda v: v)(value).to(self._spu)
        self._objects[handle.key] = obj

    def _call(
        self, fn: Callable[..., Any], args: Sequence[Handle], name: str
    ) -> tuple[Handle, RunReport]:
        patches.ship_by_value(fn)
        structs = tuple(a.structure for a in args)
        out_struct = jax.eval_shape(fn, *structs)
        handle = self._new_handle(out_struct)
        # SPU compiles inside its actors: constants are folded there, as for backend 'spu'
        key = (fn, tuple((a.treedef, a.avals) for a in args))
        shipped = self._shipped.get(key) or self._shipped.setdefault(key, folding(fn, structs))
        marks = self._logs.mark()
        t0 = time.perf_counter()
        out = self._spu(shipped)(*[self._objects[a.key] for a in args])
        self._sf.wait([out])
        run_s = time.perf_counter() - t0
        self._objects[handle.key] = out
        # compile and execution happen together inside the SPU actors: compile_s is unknown
        return handle, RunReport("secretflow", name, None, run_s, self._logs.comm_since(marks))

    def _reveal(self, handle: Handle, to: str | None) -> list[np.ndarray]:
        obj = self._objects[handle.key]
        if to is not None:
            obj = obj.to(self._pyus[to])  # shares go to that party's PYU, which reconstructs
        value = self._sf.reveal(obj)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]

    def _free(self, handle: Handle) -> None:
        self._objects.pop(handle.key, None)

    def _close(self) -> None:
        self._objects.clear()
        try:
            patches.ship_models_as_programs(False)
            with quiet():
                self._sf.shutdown()
        finally:
            _remove(self._folder)
            SecretFlowSession._active = None


def _check_socket_room(folder: str) -> None:
    """Ray's sockets in ``folder`` must fit in an AF_UNIX path (107 bytes): one line if not."""
    suffix = len(RAY_SOCKET.format(pid=os.getpid()))
    if len(folder.encode()) + suffix > 107:
        parent = os.path.dirname(folder)
        raise ConfigError(
            f"the temporary folder {parent} is too long for Ray's sockets (at most "
            f"{107 - suffix - len(os.path.basename(folder)) - 1} characters); set TMPDIR to a "
            "shorter folder, e.g. /tmp"
        )


def _remove(folder: str) -> None:
    """The session's folder, after the Ray processes that still use it (Ray's agents may
    outlive ``sf.shutdown``) have ended."""
    janitor.end_users_of({folder}, os.getpgrp())
    scratch.remove(folder)
