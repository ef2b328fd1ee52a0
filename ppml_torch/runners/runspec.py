"""The run-spec syntax every command that runs on several runtimes shares.

``backend[:protocol[:field]]``, plus ``torch`` for torch eager (plaintext, no conversion)::

    torch  cpu  spu  spu:ABY3  spu:SEMI2K:FM128  secretflow:SEMI2K

A missing protocol or field takes the default of ``--field``-style options (``default_field``)
and then the runner's defaults (SEMI2K, FM64).  Every spec is validated here, before any data
is loaded or any runtime started.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from .config import BACKENDS, ConfigError, resolve

TORCH = "torch"  # torch eager: the reference every other run is compared with


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One parsed run: ``backend`` is ``torch`` or a runner backend."""

    backend: str
    protocol: str | None = None
    field: str | None = None

    @property
    def is_torch(self) -> bool:
        return self.backend == TORCH

    @property
    def is_mpc(self) -> bool:
        return self.backend in ("spu", "secretflow")

    def __str__(self) -> str:
        return ":".join(p for p in (self.backend, self.protocol, self.field) if p)

    def open(self, **session_kwargs):
        """Open this run's session (not for ``torch``)."""
        from . import open_session

        if self.is_torch:
            raise ConfigError("run 'torch' is torch eager and has no session")
        return open_session(self.backend, self.protocol, self.field, **session_kwargs)


def parse_run(spec: str, default_field: str | None = None) -> RunSpec:
    """``"spu:ABY3"`` -> ``RunSpec("spu", "ABY3", "FM64")``; one-line error when it is wrong."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            f"run spec {spec!r} is empty; write backend[:protocol[:field]], e.g. spu:ABY3"
        )
    parts = spec.split(":")
    if len(parts) > 3:
        raise ConfigError(f"run {spec!r} has {len(parts)} parts; write backend[:protocol[:field]]")
    backend, protocol, field = (parts + [None, None])[:3]
    backend = backend.lower()
    if backend in (TORCH, "cpu"):
        if protocol or field:
            raise ConfigError(
                f"run {spec!r}: {backend} is plaintext and takes no protocol; write just {backend!r}"
            )
        return RunSpec(backend)
    if backend not in BACKENDS:
        raise ConfigError(
            f"run {spec!r}: unknown backend {backend!r}; use {TORCH}, {', '.join(BACKENDS)}"
        )
    try:
        cfg = resolve(backend, protocol or None, field or default_field)
    except ConfigError as e:
        raise ConfigError(f"run {spec!r}: {e}") from None
    if cfg.backend == "secretflow":
        from .secretflow import check_importable

        check_importable()
    return RunSpec(cfg.backend, cfg.protocol, cfg.field)


def one_party_run(runs: list[RunSpec], example: str) -> RunSpec:
    """The run of a one-process-per-party command (``--cluster``/``--party``, ``launch``):
    exactly one, on ``secretflow`` (the other backends keep every party in one process).
    ``example`` is the run the one-line error suggests, e.g. ``secretflow:SEMI2K``."""
    single = [str(r) for r in runs if r.backend != "secretflow"]
    if single:
        raise ConfigError(
            f"run(s) {', '.join(single)} keep every party in one process; with one process per "
            f"party use secretflow runs only, e.g. --runs {example}"
        )
    if len(runs) != 1:
        raise ConfigError(
            f"one process per party runs one run at a time, got {len(runs)}; give one --runs"
        )
    return runs[0]


def parse_runs(
    specs: Iterable[str], default_field: str | None = None, *, allow_torch: bool = True
) -> list[RunSpec]:
    """Every spec of a ``--runs`` list, validated before anything runs; duplicates refused."""
    out: list[RunSpec] = []
    for spec in specs:
        run = parse_run(spec, default_field)
        if run.is_torch and not allow_torch:
            raise ConfigError(f"run {spec!r}: this command has no torch eager run; drop it")
        if run in out:
            raise ConfigError(f"run {spec!r} is listed twice (as {run})")
        out.append(run)
    if not out:
        raise ConfigError("no runs given; list at least one, e.g. --runs cpu spu:ABY3")
    return out
