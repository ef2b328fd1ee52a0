"""Shared runners: the same JAX function in plaintext and under MPC.

Two levels:

* a **session** per runtime that stays alive across calls (:func:`open_session`): values are
  ``put`` once with an owner and a visibility, stay where they are (as shares under MPC),
  functions ``call``-ed on them return handles, and only ``reveal`` shows a value;
* :func:`wrap`, on top of it: a function called exactly like the original one, whose inputs
  are declared with owners and whose outputs are revealed.

Backends: ``cpu`` (plaintext JAX jit), ``spu`` (SPU's runtime in-process, one runtime per
party), ``secretflow`` (SecretFlow simulation on Ray: PYU data owners, an SPU device).

Compiling for SPU (XLA or StableHLO route) is in :mod:`.compile`; a compiled program, or a
``.mlir`` written by ``ppml-torch export-stablehlo``, runs in an ``spu`` session
(``SpuSession.run_program``, :func:`.spu.run_exported`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InputError
from .base import (
    PUBLIC,
    SECRET,
    Event,
    Handle,
    HandleError,
    RunReport,
    Session,
    check_leaf,
    check_owners,
    total,
)
from .comm import CommStats
from .config import (
    BACKENDS,
    DEFAULT_IR,
    FIELDS,
    IRS,
    PROTOCOLS,
    ConfigError,
    SessionConfig,
    fixed_point_range,
    resolve,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_IR",
    "FIELDS",
    "IRS",
    "PROTOCOLS",
    "PUBLIC",
    "SECRET",
    "CommStats",
    "Event",
    "ConfigError",
    "Handle",
    "HandleError",
    "InputError",
    "RunReport",
    "Session",
    "SessionConfig",
    "check_leaf",
    "fixed_point_range",
    "open_session",
    "run",
    "total",
    "wrap",
]


def open_session(
    backend: str,
    protocol: str | None = None,
    field: str | None = None,
    *,
    parties: Sequence[str] | None = None,
    runtime: Mapping[str, Any] | None = None,
    profile: bool = True,
    ir: str = DEFAULT_IR,
    cluster: str | None = None,
    party: str | None = None,
) -> Session:
    """Start a runtime: ``cpu``, ``spu`` or ``secretflow``.  Use it as a context manager.

    ``protocol``: SEMI2K (default) or CHEETAH for 2 parties, ABY3 for 3.  ``field``: FM64
    (default) or FM128.  ``parties`` defaults to ``alice, bob[, carol]``.  ``runtime``: SPU
    fixed-point settings (see ``ppml_torch.runners.config.KNOBS``; their values are checked
    too, fraction bits by :func:`fixed_point_range`'s rule).  ``profile`` turns on SPU's
    per-op profile, the source of the communication figures.  ``ir`` (``spu`` only): what SPU
    compiles, ``"xla"`` (:data:`DEFAULT_IR`, SPU's JAX frontend) or ``"stablehlo"`` (JAX's
    StableHLO text).

    ``cluster``/``party`` (``secretflow`` only): run this process as ONE party of a
    multi-process SecretFlow job described by a cluster file (see
    :mod:`ppml_torch.runners.secretflow.production`); protocol/field default to the file's.

    Every argument is checked before anything starts (no runtime, no Ray).
    """
    from .leftovers import remove_at_exit

    remove_at_exit()  # JAX's empty folder in the temporary folder (leftovers.py)
    if cluster is not None or party is not None:
        from .secretflow.production import open_production

        return open_production(
            backend, protocol, field, cluster, party, parties, runtime, profile, ir
        )
    cfg = resolve(backend, protocol, field, parties, runtime)
    if ir not in IRS:
        raise ConfigError(f"unknown ir {ir!r}; use one of {', '.join(IRS)}")
    if ir != DEFAULT_IR and cfg.backend != "spu":
        raise ConfigError(
            f"ir={ir!r} applies to backend 'spu' only (SecretFlow uses SPU's frontend)"
        )
    if cfg.backend == "cpu":
        from .cpu import CpuSession

        return CpuSession(cfg)
    if cfg.backend == "spu":
        from .spu import SpuSession

        return SpuSession(cfg, profile=profile, ir=ir)
    from .secretflow import check_importable
    from .secretflow.simulation import SecretFlowSession

    check_importable()
    return SecretFlowSession(cfg, profile=profile)


def wrap(
    session: Session,
    fn: Callable[..., Any],
    owners: Sequence[str],
    *,
    reveal_to: str | None = None,
    check_inputs: Callable[..., None] | None = None,
) -> Callable[..., Any]:
    """``fn`` run in ``session``, called exactly like ``fn``.

    ``owners`` gives one owner per positional argument: a party name (the input enters as that
    party's secret) or ``'public'``.  Each call checks the inputs on their owners' side
    (``check_inputs(*args)`` if given, then ``session.put``'s checks), puts them, runs ``fn``
    and reveals the outputs (to ``reveal_to``, default every party); the inputs and outputs
    are then freed, also when the call fails.  When ``fn`` is a converted model's ``apply``
    (``wrap(s, cm.apply, ...)``), ``check_inputs`` defaults to the model's own checks
    (:meth:`~ppml_torch.model.ConvertedModel.check_params` and ``check_inputs``: token ids
    inside their table, shapes and dtypes as converted).
    The cost of the last call is in ``wrapped.last_report``.  To keep inputs inside the session
    across calls (weights shared once, many steps), use ``session.put/call/reveal`` directly.
    """
    owners = tuple(owners)
    fname = getattr(fn, "__name__", fn)
    check_owners(session.parties, owners, None, f"wrap({fname})")
    if reveal_to is not None and reveal_to not in session.parties:
        raise ConfigError(
            f"wrap({fname}): reveal_to={reveal_to!r} is not a party of the session "
            f"({', '.join(session.parties)}); use one of them or None (every party)"
        )
    if check_inputs is None:
        check_inputs = _model_checks(fn)

    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        name = getattr(fn, "__name__", "fn")
        check_owners(session.parties, owners, len(args), f"{name}")
        if check_inputs is not None:
            check_inputs(*args)
        first = len(session.reports)
        handles: list[Handle] = []
        try:
            for a, o in zip(args, owners, strict=True):
                handles.append(session.put(a, owner=o))
            out = session.call(fn, *handles, name=name)
            handles.append(out)
            value = session.reveal(out, to=reveal_to)
        finally:
            if not session._closed:
                for h in handles:
                    session.free(h)
        wrapped.last_report = total(session.reports[first:], name)  # type: ignore[attr-defined]
        return value

    wrapped.last_report = None  # type: ignore[attr-defined]
    return wrapped


def _model_checks(fn: Callable[..., Any]) -> Callable[..., None] | None:
    """The owner-side checks of a converted model's bound ``apply`` (params, then inputs)."""
    from ..model import ConvertedModel

    model = getattr(fn, "__self__", None)
    if not isinstance(model, ConvertedModel) or getattr(fn, "__func__", None) not in (
        ConvertedModel.apply,
        ConvertedModel.__call__,
    ):
        return None

    def check(*args: Any) -> None:
        if fn.__func__ is ConvertedModel.apply:
            if not args:
                return
            model.check_params(args[0])
            args = args[1:]
        model.check_inputs(*args)

    return check


def run(
    fn: Callable[..., Any],
    *args: Any,
    owners: Sequence[str],
    backend: str = "cpu",
    **session_kwargs: Any,
) -> tuple[Any, RunReport]:
    """One-shot: open a session, run ``fn(*args)`` with the given owners, close it."""
    with open_session(backend, **session_kwargs) as s:
        f = wrap(s, fn, owners)
        out = f(*args)
        return out, f.last_report
