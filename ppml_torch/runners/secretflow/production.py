"""SecretFlow in production (multi-controller) mode: this process is ONE party.

Every party runs the same program, each in its own process (on its own machine), with the same
cluster file (see :mod:`.cluster`) and its own ``party=``.  What differs from the one-process
backends:

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

Start-up, supervision and failures are the other modules' (:mod:`.startup`,
:mod:`.supervision`, :mod:`.failures`); this module only moves values.

Bounds: a party whose process is gone (its ports closed) is named within ``timeout_s`` by a
watchdog thread, whatever the main thread waits for.  A party that is alive but stalled is
caught by the receive timeouts: ``timeout_s`` inside SPU ops, ``max(timeout_s,
start_timeout_s)`` on the cross-silo channel (it also carries legitimately long one-sided
waits: party 0 compiling an SPU program, a party loading its data, start-up).

A party that stops answering (dies, is killed, loses its network) makes every other party
raise :class:`~.failures.PartyLostError` naming it within the cluster file's ``timeout_s``
(default 30 s), whatever it was waiting for (an SPU op, a PYU result, a reveal, start-up).
After that the SecretFlow runtime of this process is unusable: the command line ends the
process at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ...dtypes import jax_dtype_name
from ..base import PUBLIC, SECRET, Event, Handle, RunReport, Session
from ..config import ConfigError, SessionConfig
from .cluster import Cluster, check_party
from .startup import PartyRuntime


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
        check_party(cluster, party)  # ports free, party listed: before anything connects
        super().__init__(config)
        self.cluster = cluster
        self.party = party
        self._objects: dict[int, Any] = {}
        t0 = time.perf_counter()
        self._rt = rt = PartyRuntime(cluster, party)
        self._failures = rt.failures
        ProductionSession._active = self
        try:
            rt.connect()
            rt.check_agreement(config)
            rt.start_spu(config, profile)
        except BaseException as e:
            try:
                rt.abort(e)
            finally:
                ProductionSession._active = None
            raise
        self._sf, self._pyus, self._spu = rt.sf, rt.pyus, rt.spu
        self.startup_s = time.perf_counter() - t0
        rt.supervisor.startup_done()

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
        with self._failures.guard("announcing public metadata (shapes)"):
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
            value = self._owner_value(value, label)
            struct = _structure(value)
        elif not callable(value) and not jax.tree_util.tree_leaves(value):
            raise ValueError("put: the placeholder has no arrays in it")
        announced = self._pyus[src](lambda: struct, num_returns=1)()
        with self._failures.guard(f"put(owner={label}) (waiting for {src}'s shapes)"):
            struct_all = self._sf.reveal(announced)  # public metadata, as in every Handle
        if src != self.party and not callable(value):
            _check_placeholder(value, struct_all, src, label)
        data = self._pyus[src](lambda: value, num_returns=1)()
        leaves, treedef = jax.tree_util.tree_flatten(struct_all)
        avals = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves)
        handle = Handle(self.id, next(self._keys), treedef, avals, owner, visibility)
        with self._failures.guard(f"put(owner={label})"):
            if visibility == PUBLIC:
                obj = data.to(self._spu, spu_vis="public")
            else:
                obj = data.to(self._spu)
        self._objects[handle.key] = obj
        self._live.add(handle.key)
        self._record(RunReport("secretflow", f"put #{handle.key}", 0.0, time.perf_counter() - t0))
        self.record.append(Event("put", handle, owner, time.time()))
        return handle

    def _owner_value(self, value: Any, label: str) -> Any:
        """In the owner's process: the value (a loader is called), checked as every session
        checks it (NaN/inf, range, lossy casts), here only."""
        if callable(value):
            value = value()
        for x in jax.tree_util.tree_leaves(value):
            if isinstance(x, jax.ShapeDtypeStruct):
                raise ConfigError(
                    f"put(owner={label}): party {self.party!r} owns this value but passed a "
                    "shape-only placeholder; pass the data (or a loader) in the owner's process"
                )
        arrays, treedef = self._check_value(value, label)
        return jax.tree_util.tree_unflatten(treedef, arrays)

    def _put(self, handle: Handle, arrays: list[np.ndarray]) -> None:  # put() is overridden
        raise NotImplementedError

    def _wait_own_share(self, obj: Any) -> None:
        """Wait until this party's share of an SPU result exists (nothing is sent)."""
        share = obj.shares_name[self._rt.rank]
        share.get_object() if hasattr(share, "get_object") else None

    def _call(
        self, fn: Callable[..., Any], args: Sequence[Handle], name: str
    ) -> tuple[Handle, RunReport]:
        out_struct = jax.eval_shape(fn, *[a.structure for a in args])
        handle = self._new_handle(out_struct)
        marks = self._rt.logs.mark()
        t0 = time.perf_counter()
        with self._failures.guard(f"SPU op {name}"):
            out = self._spu(fn)(*[self._objects[a.key] for a in args])
            self._wait_own_share(out)
        run_s = time.perf_counter() - t0
        self._objects[handle.key] = out
        comm = self._rt.logs.comm_since(marks)
        return handle, RunReport("secretflow", name, None, run_s, comm)

    def reveal(self, handle: Handle, to: str | None = None) -> Any:
        """The value in ``to``'s process (every party's if ``to`` is None); ``None`` elsewhere."""
        value = super().reveal(handle, to)
        if to is not None and to != self.party:
            return None
        return value

    def _reveal(self, handle: Handle, to: str | None) -> list[Any]:
        obj = self._objects[handle.key]
        if to is None:
            with self._failures.guard("reveal to every party"):
                value = self._sf.reveal(obj)
            return [np.asarray(x) for x in jax.tree_util.tree_leaves(value)]
        with self._failures.guard(f"reveal to {to}"):
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
            self._rt.close()
        finally:
            ProductionSession._active = None


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


def _check_placeholder(value: Any, announced: Any, src: str, label: str) -> None:
    """Another party's placeholder must describe what its owner ``src`` announced."""
    declared = _declared(value)
    if jax.tree_util.tree_structure(declared) != jax.tree_util.tree_structure(
        announced
    ) or jax.tree_util.tree_leaves(declared) != jax.tree_util.tree_leaves(announced):
        raise ConfigError(
            f"put(owner={label}): this party's placeholder {_short(declared)} differs from "
            f"what {src} put in, {_short(announced)}; describe the owner's data exactly"
        )


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
    from ..config import resolve
    from . import check_importable
    from .cluster import ClusterError, load_cluster

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
