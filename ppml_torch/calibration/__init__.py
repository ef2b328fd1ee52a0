"""Calibration: find a fixed-point overflow before it happens.

``ppml_torch.calibrate(model, sample_inputs, field=..., fraction_bits=...)`` runs the program
MPC will run in plaintext on sample data the caller may see, records per module the largest
magnitudes (of every value and of every product before truncation), the smallest magnitudes
that matter, divisors near zero and arguments outside the domain of ``sqrt``/``log``, and
returns a :class:`CalibrationReport`: per-module headroom in bits, the risks named plainly
("overflow risk", "precision loss", "divisor near zero", "sqrt/log of negative") and the
field / fraction bits it recommends.  ``report.check()`` raises :class:`CalibrationError`
when it predicts a wrong result: the gate for ``fit``/``predict``/``generate``.

The package is named ``calibration`` so that ``ppml_torch.calibrate`` stays the function
(:func:`.run.calibrate`), as ``ppml_torch.generation`` holds ``ppml_torch.generate``.

Files: :mod:`.run` (``calibrate``, module paths), :mod:`.interpret` (the jaxpr interpreter),
:mod:`.stats` (what is measured), :mod:`.report` (judging, printing, the gate).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CalibrationError",
    "CalibrationReport",
    "Problem",
    "calibrate",
    "calibrate_function",
]


def __getattr__(name: str) -> Any:
    if name == "calibrate":
        from .run import calibrate

        return calibrate
    if name in ("CalibrationError", "CalibrationReport", "Problem"):
        from . import report

        return getattr(report, name)
    if name in ("CalibrationInputError", "calibrate_function"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'ppml_torch.calibration' has no attribute {name!r}")
