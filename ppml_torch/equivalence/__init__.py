"""Equivalence checks: does a torch model give the same answer after conversion, in
plaintext and under MPC?

* :func:`check_equivalence` (also ``ppml_torch.check_equivalence``): every route x every run
  against torch eager, returned as an :class:`EquivalenceReport` (printed: a table);
* a pytest plugin (:mod:`.plugin`, entry point ``pytest11``): the ``ppml_equivalence``
  fixture and ``--ppml-runs``; sessions shared over a test run (:mod:`.sessions`);
* ``ppml-torch check MODULE_SPEC`` on the command line (:mod:`ppml_torch.cli.check`);
* default tolerances from measured per-op errors (:mod:`.tolerances`);
* ``scripts/models_page.py`` (not part of the package) writes the compatibility table
  ``docs/models.md`` with it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_RUNS",
    "ROUTES",
    "EquivalenceError",
    "EquivalenceReport",
    "Row",
    "check_equivalence",
]


def __getattr__(name: str) -> Any:
    if name in ("check_equivalence", "EquivalenceError", "DEFAULT_RUNS", "ROUTES"):
        from . import check

        return getattr(check, name)
    if name in ("EquivalenceReport", "Row", "Mismatch"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module 'ppml_torch.equivalence' has no attribute {name!r}")
