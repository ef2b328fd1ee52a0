"""Default tolerances of an equivalence check, derived from measured per-op errors.

SPU evaluates ``exp``, ``log``, reciprocals, square roots, ``tanh``, ``sigmoid``, ``erf`` (and
the softmax, layer norm, GELU, ... built on them) with polynomial or iterative approximations
whose error is far above the fixed-point truncation of additions and products.  A fixed
tolerance is either too loose for a linear model or too tight for a gated one, so the default
tolerance of a check is computed from the ops the converted program actually runs:

    atol = base.atol + SAFETY * sum over approximated ops of  error(op) * sqrt(uses of op)

``base`` is :data:`TOLERANCES` below (truncation of additions and products);
``error(op)`` is the largest absolute error of the op measured under that protocol and field
by ``scripts/measure_op_errors.py`` on realistic input ranges (``op_errors.json`` beside this
file: outputs, and gradients of ``sum(op(x))``); ``sqrt(uses)`` treats the errors of repeated
uses as independent; ``SAFETY`` covers amplification by the weights that follow.  ``rtol`` is
the base one.  Gradients use the ``grad`` errors, and the same sum is added to ``rtol``, which
for gradients is relative to the parameter's largest gradient: a weight's gradient sums the
ops' derivative errors over the batch (64 rows of sigmoid/tanh gates: 1.7% off under SEMI2K
and ABY3, where 5 rows are 0.02% off), so its error grows with the gradient itself.  An op marked approximate in the op table but not measured counts with the
largest error measured for that setting.  Plaintext runs use :data:`PLAINTEXT`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path

from ppml_torch.runners.config import DEFAULT_FIELD

TABLE = Path(__file__).with_name("op_errors.json")
SAFETY = 2.0


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """An element passes when ``|got - expected| <= atol + rtol * |expected|``."""

    atol: float
    rtol: float


# (protocol, field) -> tolerance for values of order 1 after a few fixed-point operations
# (additions and products: their truncation).  Chosen from measured errors
# (tests/runners/test_parity.py prints the largest error seen per protocol/field) with
# head-room; they are not loosened per test.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    # Largest errors measured on the parity suite (elementwise, matmul, reductions, MLP forward on
    # inputs in [-2, 2]): FM64 3.5e-5 (CHEETAH), 3.3e-5 (ABY3), 2.7e-5 (SEMI2K); FM128 4.8e-7.
    # Deep models (GPT-2's exp/division/rsqrt chains) exceed these: their tests measure the error
    # and check decisions against it (top-1 margins) instead of using this table.
    ("SEMI2K", "FM64"): Tolerance(atol=2e-4, rtol=1e-3),
    ("CHEETAH", "FM64"): Tolerance(atol=2e-4, rtol=1e-3),
    ("ABY3", "FM64"): Tolerance(atol=2e-4, rtol=1e-3),
    ("SEMI2K", "FM128"): Tolerance(atol=5e-6, rtol=1e-5),
    ("CHEETAH", "FM128"): Tolerance(atol=5e-6, rtol=1e-5),
    ("ABY3", "FM128"): Tolerance(atol=5e-6, rtol=1e-5),
}
# cpu (XLA float32) against torch eager (float32): the order of float additions differs.
PLAINTEXT = Tolerance(atol=1e-5, rtol=1e-4)


def base(protocol: str, field: str | None = None) -> Tolerance:
    """The :data:`TOLERANCES` entry of a protocol and field (default: the default field)."""
    key = (protocol.upper(), (field or DEFAULT_FIELD).upper())
    if key not in TOLERANCES:
        raise KeyError(f"no tolerance for {key}; add one to ppml_torch/equivalence/tolerances.py")
    return TOLERANCES[key]


@functools.lru_cache(maxsize=1)
def op_errors() -> dict[str, dict[str, dict[str, float]]]:
    """``{"SEMI2K:FM64": {"aten.tanh.default": {"out": .., "grad": .., "scale": ..}}}``."""
    return json.loads(TABLE.read_text())["errors"]


def op_error(protocol: str, field: str, op: str, kind: str = "out") -> float | None:
    """The measured error of ``op`` (``kind`` ``"out"`` or ``"grad"``), None if not measured."""
    row = op_errors().get(f"{protocol}:{field}", {}).get(op)
    return None if row is None else float(row[kind])


def derive(
    protocol: str | None,
    field: str | None,
    approx_ops: Mapping[str, int],
    kind: str = "out",
) -> tuple[Tolerance, str]:
    """The default tolerance for a run and the ops its program uses, and how it was made.

    ``protocol=None`` is plaintext.  ``approx_ops``: op name -> number of uses, approximated
    ops only.  Returns the tolerance and a one-line explanation (the terms of the sum).
    """
    if protocol is None:
        return PLAINTEXT, "plaintext float32"
    protocol, field = protocol.upper(), (field or DEFAULT_FIELD).upper()
    start = base(protocol, field)
    setting = op_errors().get(f"{protocol}:{field}")
    if setting is None:
        raise KeyError(
            f"no measured op errors for {protocol}:{field}; run scripts/measure_op_errors.py "
            f"--settings {protocol}:{field}"
        )
    worst = max(float(r[kind]) for r in setting.values())
    terms = []
    total = 0.0
    for op, uses in sorted(approx_ops.items()):
        row = setting.get(op)
        err = worst if row is None else float(row[kind])
        total += err * math.sqrt(uses)
        short = op.removeprefix("aten.").split(".")[0]
        terms.append(f"{short}{'' if uses == 1 else f'x{uses}'} {err:.1e}")
    atol = start.atol + SAFETY * total
    how = f"base {start.atol:g}" + (f" + {SAFETY:g}*({', '.join(terms)})" if terms else "")
    rtol = start.rtol
    if kind == "grad":  # a parameter's gradient sums the ops' derivative errors over the batch
        rtol = start.rtol + SAFETY * total
        how += " (also as rtol of the largest gradient)"
    return Tolerance(atol=float(f"{atol:.2g}"), rtol=float(f"{rtol:.2g}")), how
