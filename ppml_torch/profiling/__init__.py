"""Where the MPC cost goes, per torch module and per kind of work: ``ppml_torch.profile``.

``ppml_torch.profile(module, example_inputs, session="spu:SEMI2K", route="graph",
grads=False)`` runs the model's program under MPC once whole (the totals) and once cut into
parts, one module's work of one kind each (:mod:`.program`), and returns a
:class:`ProfileReport`: bytes, sends and time per module and per kind of work (matmul,
softmax, GeLU, LayerNorm, argmax, comparisons, ...), the parts adding up to the whole, and
``report.estimate("lan" | "wan" | "puma-lan" | (bandwidth_bits_per_s, rtt_s))``: the time
between machines (:mod:`.network`).

The package is named ``profiling`` so that ``ppml_torch.profile`` stays the function, as
``ppml_torch.calibration`` holds ``ppml_torch.calibrate``.

Files: :mod:`.run` (``profile``, ``profile_call``), :mod:`.program` (cutting a traced program
into parts), :mod:`.scopes` (which module, direction and kind an equation belongs to),
:mod:`.report` (rows, tables), :mod:`.network` (presets and the estimate), :mod:`.plot`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NETWORKS",
    "Network",
    "NetworkError",
    "ProfileError",
    "ProfileReport",
    "model_scope",
    "part_scope",
    "profile",
    "profile_call",
]


def __getattr__(name: str) -> Any:
    if name in ("profile", "profile_call"):
        from . import run

        return getattr(run, name)
    if name in ("ProfileError", "ProfileReport"):
        from . import report

        return getattr(report, name)
    if name in ("NETWORKS", "Network", "NetworkError"):
        from . import network

        return getattr(network, name)
    if name in ("model_scope", "part_scope"):
        from . import scopes

        return getattr(scopes, name)
    raise AttributeError(f"module 'ppml_torch.profiling' has no attribute {name!r}")
