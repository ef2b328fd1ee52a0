"""SecretFlow in simulation mode on Ray: data owners are ``PYU`` devices, computation runs on
an ``SPU`` device built from the session's protocol/field settings.

The session starts SecretFlow itself and stops it on close (one SecretFlow runtime per
process at a time).  Ray is given more logical CPUs than the machine has (on 2 cores,
``num_cpus=2`` deadlocks: the SPU actors wait for CPUs forever) and its log noise is kept off
the console.  Each party's SPU runtime logs to its own file, so communication is reported per
party.

Functions are compiled inside SecretFlow's workers, so they travel there pickled.  A
:class:`~ppml_torch.model.ConvertedModel` inside one (``cm.apply`` of ``fit``, ``predict``,
``generate``, a user's program) travels as its program only (:func:`ppml_torch.model.
shipping_state`): its weights as shapes and dtypes (the program takes them as an input; the
plaintext copy must not reach another party's process) and without torch's
``ExportedProgram`` (torch cannot unpickle it).  Calling such a model on its own weights
(``cm(x)``) inside a program is refused in one line; pass the weights as an input.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .base import PUBLIC, Handle, RunReport, Session
from .comm import CommStats, link_totals
from .compile import folding
from .config import ConfigError, SessionConfig, spu_runtime_config_dict

RAY_LOGICAL_CPUS = 8


def check_importable() -> None:
    """Fail fast, with the fix, when SecretFlow is not installed."""
    import importlib.util

    if importlib.util.find_spec("secretflow") is None:
        raise ConfigError(
            "backend 'secretflow' needs the secretflow package, which is not importable here; "
            "run `make setup` (installs requirements/lock.txt) or use backend='spu'"
        )


_LOG: io.TextIOBase | None = None


def _log_file() -> io.TextIOBase:
    """One file per process for SecretFlow's and Ray's console output, kept open for good.

    Ray keeps references to the ``sys.stdout``/``sys.stderr`` it saw at start-up and writes to
    them later; a file that is never closed is safe, a temporary buffer is not.
    """
    global _LOG
    if _LOG is None:
        fd, _ = tempfile.mkstemp(prefix="ppml-torch-secretflow-", suffix=".log")
        _LOG = open(fd, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    return _LOG


@contextlib.contextmanager
def _quiet():
    """Keep SecretFlow's and Ray's start-up chatter off the user's console (it goes to a log)."""
    log = _log_file()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield log


def _ship_by_value(fn: Callable[..., Any]) -> None:
    """Let Ray workers unpickle ``fn`` even when its module is not importable there.

    Ray pickles functions by reference to their module; a user's script or a test module is
    not on the workers' path, so such modules are pickled by value instead.
    """
    import sys

    from ray import cloudpickle

    mod_name = getattr(getattr(fn, "func", fn), "__module__", None)
    module = sys.modules.get(mod_name or "")
    path = getattr(module, "__file__", None) or ""
    if module is None or mod_name == "__main__" or mod_name.split(".")[0] == "ppml_torch":
        return
    if "site-packages" in path or not path:
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:
        pass  # already registered


def _ship_models_as_programs(on: bool) -> None:
    """While a session is open, Ray pickles a ``ConvertedModel`` as its program only (see the
    module docstring); Ray's registry of serializers is per process."""
    import ray

    from ..model import ConvertedModel, from_shipping_state, shipping_state

    if on:
        ray.util.register_serializer(
            ConvertedModel, serializer=shipping_state, deserializer=from_shipping_state
        )
    else:
        ray.util.deregister_serializer(ConvertedModel)


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
        with _quiet():
            import secretflow as sf
            from secretflow.distributed import primitive as sfd
            from spu import libspu

            logging.getLogger("ray").setLevel(logging.ERROR)
            sf.init(
                parties=list(config.parties),
                address="local",
                num_cpus=RAY_LOGICAL_CPUS,
                log_to_driver=False,
                logging_level="error",
                include_dashboard=False,
            )
        self._sf = sf
        try:
            _ship_models_as_programs(True)
            self._start_devices(config, profile, libspu, sfd)
        except BaseException:
            # Ray is up: stop it, or the process keeps a cluster nobody can reach or close.
            _ship_models_as_programs(False)
            with _quiet():
                sf.shutdown()
            raise
        self._objects: dict[int, Any] = {}
        self._shipped: dict[Any, Any] = {}  # one folded function per program: SF caches by it
        SecretFlowSession._active = self

    def _start_devices(self, config: SessionConfig, profile: bool, libspu: Any, sfd: Any) -> None:
        """PYUs and the SPU device (after ``sf.init``; the caller stops Ray if this fails)."""
        from secretflow.device.device.spu import SPURuntime

        sf = self._sf
        self._log_dir = tempfile.mkdtemp(prefix="ppml-torch-sf-") if profile else None
        log_dir = self._log_dir

        class _SPU(sf.SPU):
            """SecretFlow's SPU device with one log file per party (for communication figures)."""

            def init(self) -> None:
                for rank, node in enumerate(self.cluster_def["nodes"]):
                    opts = libspu.logging.LogOptions()
                    if log_dir is not None:
                        opts.enable_console_logger = False
                        opts.system_log_path = os.path.join(log_dir, f"{node['party']}.log")
                    self.actors[node["party"]] = (
                        sfd.remote(SPURuntime)
                        .party(node["party"])
                        .remote(rank, self.cluster_def, self.link_desc, opts, self.id)
                    )

        cluster = sf.utils.testing.cluster_def(
            list(config.parties), runtime_config=spu_runtime_config_dict(config, profile=profile)
        )
        with _quiet():
            self._pyus = {p: sf.PYU(p) for p in config.parties}
            self._spu = _SPU(cluster)

    # -- communication -------------------------------------------------------------------------
    def _log_marks(self) -> dict[str, int]:
        if self._log_dir is None:
            return {}
        marks = {}
        for p in self.parties:
            path = os.path.join(self._log_dir, f"{p}.log")
            marks[p] = os.path.getsize(path) if os.path.exists(path) else 0
        return marks

    def _comm_since(self, marks: dict[str, int]) -> CommStats | None:
        if self._log_dir is None:
            return None
        per = {}
        for p in self.parties:
            path = os.path.join(self._log_dir, f"{p}.log")
            text = ""
            if os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(marks.get(p, 0))
                    text = f.read().decode("utf-8", "replace")
            per[p] = link_totals(text)
        return CommStats(sum(b for b, _ in per.values()), sum(a for _, a in per.values()), per)

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
        _ship_by_value(fn)
        structs = tuple(a.structure for a in args)
        out_struct = jax.eval_shape(fn, *structs)
        handle = self._new_handle(out_struct)
        # SPU compiles inside its actors: constants are folded there, as for backend 'spu'
        key = (fn, tuple((a.treedef, a.avals) for a in args))
        shipped = self._shipped.get(key) or self._shipped.setdefault(key, folding(fn, structs))
        marks = self._log_marks()
        t0 = time.perf_counter()
        out = self._spu(shipped)(*[self._objects[a.key] for a in args])
        self._sf.wait([out])
        run_s = time.perf_counter() - t0
        self._objects[handle.key] = out
        # compile and execution happen together inside the SPU actors: compile_s is unknown
        return handle, RunReport("secretflow", name, None, run_s, self._comm_since(marks))

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
            _ship_models_as_programs(False)
            with _quiet():
                self._sf.shutdown()
        finally:
            SecretFlowSession._active = None
