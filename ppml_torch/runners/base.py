"""What every backend shares: handles, run reports, input checks, the session interface."""

from __future__ import annotations

import abc
import dataclasses
import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ..dtypes import CASTS_64_TO_32, cast_to_32bit
from ..errors import InputError, PpmlError
from .comm import CommStats
from .config import (
    FIELD_BITS,
    FIELD_FRACTION_BITS,
    MIN_FRACTION_BITS,
    ConfigError,
    SessionConfig,
    fixed_point_range,
    session_fraction_bits,
)

PUBLIC = "public"  # the owner/visibility name of a value every party may see
SECRET = "secret"


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What one call (or one put/reveal) cost.

    ``compile_s`` is ``None`` where the backend does not separate compilation from execution
    (SecretFlow) and 0.0 when a cached compilation was reused.  ``comm`` is ``None`` in
    plaintext.
    """

    backend: str
    what: str
    compile_s: float | None
    run_s: float
    comm: CommStats | None = None

    @property
    def wall_s(self) -> float:
        return (self.compile_s or 0.0) + self.run_s

    def describe(self) -> str:
        c = "n/a" if self.compile_s is None else f"{self.compile_s:.2f}s"
        s = f"{self.what}: compile {c}, run {self.run_s:.2f}s"
        if self.comm is not None:
            s += f", {self.comm.describe()}"
        return s


def total(reports: Sequence[RunReport], what: str = "total") -> RunReport:
    """Sum of several reports (e.g. every step of a training run)."""
    if not reports:
        raise ValueError("no reports to add up")
    comp = [r.compile_s for r in reports]
    comms = [r.comm for r in reports if r.comm is not None]
    comm = None
    if comms:
        comm = comms[0]
        for c in comms[1:]:
            comm = comm + c
    return RunReport(
        reports[0].backend,
        what,
        None if any(c is None for c in comp) else sum(comp),
        sum(r.run_s for r in reports),
        comm,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Handle:
    """A value living inside a session: secret-shared under MPC, never revealed implicitly.

    Only public metadata is visible here: the pytree structure, shapes and dtypes, who put
    the value in, and its visibility.
    """

    session_id: int
    key: int
    treedef: Any
    avals: tuple[jax.ShapeDtypeStruct, ...]
    owner: str | None  # the party that put it in, None for computed values
    visibility: str  # SECRET or PUBLIC

    @property
    def structure(self) -> Any:
        """The pytree of ``jax.ShapeDtypeStruct``: shapes and dtypes only."""
        return jax.tree_util.tree_unflatten(self.treedef, self.avals)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.avals[:4])
        more = f", ... ({len(self.avals)} arrays)" if len(self.avals) > 4 else ""
        return f"Handle(#{self.key}, {self.visibility}, owner={self.owner}, [{shapes}{more}])"


@dataclasses.dataclass(frozen=True)
class Event:
    """One entry of a session's record: a value put in (by ``party``) or revealed (to ``party``).

    ``party`` is ``None`` for a public put and for a reveal to every party; ``at`` is
    ``time.time()``.  ``Session.record`` lists them in order.
    """

    kind: str  # "put" or "reveal"
    handle: Handle
    party: str | None
    at: float


_warned_casts: set[tuple[str, str]] = set()
_session_ids = itertools.count(1)


def to_32bit(leaf: Any, where: str) -> np.ndarray:
    """A numpy array in JAX's 32-bit types (the table in :mod:`ppml_torch.dtypes`).

    A cast that loses a value (an integer outside 32 bits, a float that becomes inf or 0) is an
    :class:`~ppml_torch.errors.InputError`; ordinary float64 rounding warns once.
    """
    if hasattr(leaf, "detach") and hasattr(leaf, "numpy"):  # a torch tensor
        leaf = leaf.detach().cpu().numpy()
    arr = np.asarray(leaf)
    if arr.dtype == object or arr.dtype.kind in "USVc":
        what = "complex" if arr.dtype.kind == "c" else f"{arr.dtype.name} (non-numeric)"
        raise InputError(
            f"{where}: a {what} array cannot be an input; pass real numeric arrays (floats, "
            "integers or booleans)"
        )
    target = CASTS_64_TO_32.get(arr.dtype.name)
    if target is not None:
        key = (arr.dtype.name, target)
        arr = cast_to_32bit(arr, where)
        if key not in _warned_casts:
            _warned_casts.add(key)
            warnings.warn(
                f"ppml-torch: JAX runs with 32-bit types, so {key[0]} inputs are cast to "
                f"{key[1]} (first seen at {where}); cast them yourself to silence this",
                stacklevel=5,  # to_32bit, check_leaf, _check_value, put, caller
            )
    return arr


def check_leaf(leaf: Any, where: str, field: str | None, fraction_bits: int | None) -> np.ndarray:
    """The owner-side check of one input array before it is shared, then its 32-bit form.

    Refused with an :class:`~ppml_torch.errors.InputError` naming ``where`` (the leaf's pytree
    path and its owner): NaN or inf (fixed point has neither: SPU turns NaN into 0 and inf
    into its largest value), a lossy 64->32-bit cast, and floats beyond the fixed-point range
    of ``field`` with ``fraction_bits`` (:func:`~ppml_torch.runners.config.fixed_point_range`).
    ``field=None`` (plaintext cpu) skips the range check.
    """
    if hasattr(leaf, "detach") and hasattr(leaf, "numpy"):  # a torch tensor
        leaf = leaf.detach().cpu().numpy()
    arr = np.asarray(leaf)
    if arr.dtype.kind == "f" and arr.size:
        finite = np.isfinite(arr)
        if not finite.all():
            bad = np.argwhere(~finite)[0] if arr.ndim else ()
            value = arr[tuple(bad)]
            n = int(arr.size - np.count_nonzero(finite))
            raise InputError(
                f"{where}: {n} NaN/inf value(s), first {value} at index {tuple(int(i) for i in bad)};"
                " fixed point has no NaN or inf (SPU would silently use 0 or its largest value): "
                "replace or drop them before putting the value in"
            )
    arr = to_32bit(arr, where)
    if field is not None and fraction_bits is not None and arr.dtype.kind == "f" and arr.size:
        limit, _ = fixed_point_range(field, fraction_bits)
        top = float(np.max(np.abs(arr)))
        if top >= limit:
            raise InputError(
                f"{where}: |x| up to {top:.4g} is beyond {field} with {fraction_bits} fraction "
                f"bits (|x| < {limit:.4g}); {_what_holds(top)}, or scale the input down"
            )
    return arr


def _what_holds(magnitude: float) -> str:
    """The field / fraction bits whose input range holds ``magnitude`` (for error messages)."""
    need = int(np.floor(np.log2(magnitude))) + 1  # integer bits
    options = []
    for field, k in FIELD_BITS.items():
        f = min(FIELD_FRACTION_BITS[field], k - 3 - need)
        if f >= MIN_FRACTION_BITS:  # fewer is no setting open_session accepts
            limit, res = fixed_point_range(field, f)
            if magnitude < limit:
                options.append(
                    f"{field} with {f} fraction bits (|x| < {limit:.4g}, resolution {res:.2g})"
                )
    if not options:
        return "no field holds it"
    return "it fits " + " or ".join(options)


class HandleError(PpmlError, ValueError):
    """A handle used with a session that did not make it, or after it was freed."""


def _leaf_name(path: Any) -> str:
    """``value['w']`` / ``value[0]`` / ``value`` for a pytree path (jax.tree_util.keystr)."""
    return "value" + jax.tree_util.keystr(path)


class Session(abc.ABC):
    """A runtime that stays alive across calls.

    ``put`` a value once with an owner, ``call`` functions on handles (results stay inside the
    session as handles), ``reveal`` only what you ask for.  Use as a context manager.
    """

    def __init__(self, config: SessionConfig):
        self.config = config
        self.id = next(_session_ids)
        self.reports: list[RunReport] = []
        self.record: list[Event] = []  # what was put (by whom) and revealed (to whom, when)
        self._keys = itertools.count(1)
        self._live: set[int] = set()  # keys of the handles not freed yet
        self._closed = False

    # -- public API --------------------------------------------------------------------------
    @property
    def parties(self) -> tuple[str, ...]:
        return self.config.parties

    @property
    def local_parties(self) -> tuple[str, ...]:
        """The parties whose data this process holds: every party in a one-process session,
        this process's own party in a production session (one process per party)."""
        return self.parties

    def announce(self, fn: Callable[[str], Any]) -> dict[str, Any]:
        """Public metadata from every party: ``{party: fn(party)}``.

        ``fn(party)`` runs only where ``party``'s data is (:attr:`local_parties`) and its
        result (a small picklable value, e.g. shapes) is sent to every party: use it for what
        every party may learn.  In a one-process session it is called for every party here.
        """
        self._check_open()
        return {p: fn(p) for p in self.parties}

    def check_same(self, settings: dict[str, Any], what: str) -> None:
        """Every party must run ``what`` with the same public ``settings`` (the number of epochs,
        tokens, a model's shape: the program's steps depend on them).  One process per party:
        each process announces its own and a difference is one :class:`ConfigError` in every
        process, before any MPC work.  In one process there is nothing to compare."""
        mine = dict(settings)
        here = ",".join(self.local_parties)
        for p, theirs in self.announce(lambda p: mine).items():
            for key, v in mine.items():
                if theirs.get(key) != v:
                    raise ConfigError(
                        f"party {p!r} runs {what} with {key} {theirs.get(key)} but {here!r} with "
                        f"{v}; give every party the same arguments"
                    )

    def put(self, value: Any, owner: str | None, visibility: str | None = None) -> Handle:
        """Give the session a pytree of arrays.

        ``owner`` is the party that holds the value (``'alice'``); its value enters MPC as a
        secret.  ``owner='public'`` (or ``visibility='public'``) makes it a public value every
        party sees in the clear (hyper-parameters, public data).

        Every leaf is checked on its owner's side before anything is shared
        (:func:`check_leaf`): NaN/inf, a lossy 64->32-bit cast and, under MPC, floats
        beyond the session's fixed-point range are refused with an
        :class:`~ppml_torch.errors.InputError` naming the leaf and the owner.
        """
        self._check_open()
        visibility, owner = self._check_owner(owner, visibility, "put")
        arrays, treedef = self._check_value(value, owner or PUBLIC)
        avals = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays)
        handle = Handle(self.id, next(self._keys), treedef, avals, owner, visibility)
        self._live.add(handle.key)
        t0 = time.perf_counter()
        self._put(handle, arrays)
        self._record(
            RunReport(self.config.backend, f"put #{handle.key}", 0.0, time.perf_counter() - t0)
        )
        self.record.append(Event("put", handle, owner, time.time()))
        return handle

    def _check_args(self, args: Sequence[Any], where: str) -> None:
        """Every argument of a call is a live handle of this session (one-line errors)."""
        for i, a in enumerate(args):
            if not isinstance(a, Handle):
                raise TypeError(
                    f"{where}: argument {i} is a {type(a).__name__}, "
                    "not a Handle; put it in first with session.put(value, owner=...)"
                )
            self._check_handle(a, f"{where}: argument {i}")

    def call(self, fn: Callable[..., Any], *args: Handle, name: str | None = None) -> Handle:
        """Run a pure JAX function on handles; the result stays in the session as a handle."""
        self._check_open()
        self._check_args(args, f"call({getattr(fn, '__name__', fn)})")
        handle, report = self._call(fn, args, name or getattr(fn, "__name__", "fn"))
        self._live.add(handle.key)
        self._record(report)
        return handle

    def reveal(self, handle: Handle, to: str | None = None) -> Any:
        """The value of ``handle`` as numpy, revealed to party ``to`` (default: every party)."""
        self._check_open()
        self._check_handle(handle, "reveal")
        if to is not None and to not in self.parties:
            raise ConfigError(
                f"reveal: {to!r} is not a party of this session ({', '.join(self.parties)})"
            )
        leaves = self._reveal(handle, to)
        self.record.append(Event("reveal", handle, to, time.time()))
        return jax.tree_util.tree_unflatten(handle.treedef, leaves)

    def free(self, handle: Handle) -> None:
        """Drop a value from the session (its shares are deleted)."""
        self._check_open()
        self._check_handle(handle, "free")
        self._free(handle)
        self._live.discard(handle.key)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def last_report(self) -> RunReport | None:
        return self.reports[-1] if self.reports else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.describe()}>"

    # -- backend hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def _put(self, handle: Handle, arrays: list[np.ndarray]) -> None: ...

    @abc.abstractmethod
    def _call(
        self, fn: Callable[..., Any], args: Sequence[Handle], name: str
    ) -> tuple[Handle, RunReport]: ...

    @abc.abstractmethod
    def _reveal(self, handle: Handle, to: str | None) -> list[np.ndarray]: ...

    @abc.abstractmethod
    def _free(self, handle: Handle) -> None: ...

    def _close(self) -> None:  # noqa: B027 - optional hook: most backends have nothing to stop
        return None

    # -- helpers -----------------------------------------------------------------------------
    def _new_handle(self, out_avals: Any) -> Handle:
        leaves, treedef = jax.tree_util.tree_flatten(out_avals)
        avals = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves)
        return Handle(self.id, next(self._keys), treedef, avals, None, SECRET)

    def _check_value(self, value: Any, owner: str) -> tuple[list[np.ndarray], Any]:
        """Owner-side checks of every leaf of ``value`` (:func:`check_leaf`), before sharing."""
        leaves, treedef = jax.tree_util.tree_flatten_with_path(value)
        if not leaves:
            raise InputError("put: the value has no arrays in it")
        field = self.config.field if self.config.backend != "cpu" else None
        bits = session_fraction_bits(self.config) if field else None
        arrays = []
        for path, x in leaves:  # a loop, not a comprehension: the cast warning's stacklevel
            arrays.append(check_leaf(x, f"put(owner={owner}): {_leaf_name(path)}", field, bits))
        return arrays, treedef

    def _check_handle(self, handle: Any, where: str) -> None:
        """One line if ``handle`` is not a live handle of this session."""
        if not isinstance(handle, Handle):
            raise TypeError(
                f"{where}: expected a Handle of this session, got {type(handle).__name__}"
            )
        if handle.session_id != self.id:
            raise HandleError(
                f"{where}: handle #{handle.key} belongs to session {handle.session_id}, not this "
                f"one ({self.id}); use it with the session that made it"
            )
        if handle.key not in self._live:
            raise HandleError(
                f"{where}: handle #{handle.key} was already freed; put the value in again"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new session")

    def _check_owner(
        self, owner: str | None, visibility: str | None, where: str
    ) -> tuple[str, str | None]:
        if owner == PUBLIC:
            visibility, owner = PUBLIC, None
        visibility = visibility or SECRET
        if visibility not in (SECRET, PUBLIC):
            raise ConfigError(
                f"{where}: visibility must be 'secret' or 'public', got {visibility!r}"
            )
        if visibility == SECRET:
            if owner is None:
                raise ConfigError(
                    f"{where}: a secret input needs an owner; pass owner= one of "
                    f"{', '.join(self.parties)} (or owner='public' for a public value)"
                )
            if owner not in self.parties:
                raise ConfigError(
                    f"{where}: owner {owner!r} is not a party of this session "
                    f"({', '.join(self.parties)}); use one of them or owner='public'"
                )
        elif owner is not None and owner not in self.parties:
            raise ConfigError(
                f"{where}: owner {owner!r} is not a party ({', '.join(self.parties)})"
            )
        return visibility, owner

    def _record(self, report: RunReport) -> None:
        self.reports.append(report)


def check_owners(
    parties: Sequence[str], owners: Sequence[str], n_args: int | None, where: str
) -> None:
    """Validate a list of input owners against a session's parties (cheap, before any work)."""
    allowed = (*parties, PUBLIC)
    for i, o in enumerate(owners):
        if o is None:
            raise ConfigError(f"{where}: input {i} has no owner; give one of {', '.join(allowed)}")
        if o not in allowed:
            raise ConfigError(
                f"{where}: owner {o!r} of input {i} is not a party ({', '.join(parties)}) or 'public'"
            )
    if n_args is not None and n_args != len(owners):
        raise ConfigError(
            f"{where}: {n_args} positional inputs but {len(owners)} owners; give one owner per input"
        )
