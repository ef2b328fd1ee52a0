"""The calibration report: per-module headroom and risks, a recommended setting, a gate.

A :class:`CalibrationReport` holds what was measured (:class:`~.stats.ModuleStats`, one per
module, independent of the setting) and judges it under any field and fraction bits:

* **headroom** ``log2(limit / max)`` in bits: products (``|a*b|``, a matmul's sums, a
  quotient) against ``2**(k-2-2f)`` (:func:`~ppml_torch.runners.config.fixed_point_product_limit`),
  every other value against the encoding limit ``2**(k-2-f)``; the smaller of the two;
* **overflow risk**: headroom below 0 on the sample (MPC wraps: a wrong number, no error), or
  a mask value (>= 1e30, -inf) reaching a product or a sum of several;
* **low headroom**: 0 to :data:`HEADROOM_BITS` bits: other data of the same kind may overflow;
* **precision loss**: a tensor's relative rounding error at resolution ``2**-f`` is above 1%
  (its values that matter are too close to the resolution, or become 0);
* **divisor near zero**: a divisor (``/``, ``rsqrt``) below 256 resolution steps (its own
  rounding error above 0.4%; below one step it is 0 and the quotient garbage);
* **sqrt/log of negative**: under MPC they give an ordinary number, not NaN;
* **beyond SPU's function range**: an argument of ``sqrt``/``rsqrt``/``log`` or a secret
  divisor past the limit SPU's approximation holds to (set by the fraction bits:
  :func:`~ppml_torch.runners.config.function_input_limit`; a wrong number, no error);
* **NaN**: the plaintext program makes a NaN (0/0, inf-inf), MPC an ordinary number;
* **exp below -2**iters**: only with ``fxp_exp_mode=EXP_TAYLOR`` (ppml-torch's default is
  EXP_PADE, which gives 0 there).

:meth:`CalibrationReport.recommend` picks a setting without risks: the current one if it
qualifies, else the FM64 setting with fraction bits nearest its default 18 (FM64 is half the
bytes of FM128), else the FM128 one nearest 26.  :meth:`CalibrationReport.check` is the gate
``fit``/``predict``/``generate`` call before starting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import PpmlError
from ..runners.config import (
    FIELD_FRACTION_BITS,
    FIELDS,
    allowed_fraction_bits,
    function_input_limit,
)
from .stats import PRECISION_TOLERANCE, ModuleStats, limits

HEADROOM_BITS = 2.0
DIVISOR_STEPS = 256
# every (field, fraction bits) open_session accepts (the rule in runners/config.py)
CANDIDATES: tuple[tuple[str, int], ...] = tuple(
    (field, f) for field in FIELDS for f in allowed_fraction_bits(field)
)

OVERFLOW = "overflow risk"
LOW_HEADROOM = "low headroom"
PRECISION = "precision loss"
DIVISOR = "divisor near zero"
DOMAIN = "sqrt/log of negative"
NAN = "NaN"
TAYLOR = "exp below Taylor range"
FUNCTION_RANGE = "beyond SPU's function range"
# the risks a field / fraction bits setting can remove (the others need a change of the model)
RANGE_RISKS = (OVERFLOW, LOW_HEADROOM, PRECISION, DIVISOR, FUNCTION_RANGE)
# the risks that predict a wrong number (check() refuses them; strict=True refuses all)
BLOCKING = (OVERFLOW, DOMAIN, NAN, TAYLOR, FUNCTION_RANGE)


class CalibrationError(PpmlError, ValueError):
    """Calibration predicts a wrong result under MPC (overflow, sqrt/log of negative, ...)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    module: str  # the module path ("" is the root; "(inputs)" the inputs)
    kind: str  # the torch (graph route) module class, or ""
    risk: str  # one of the risk names above
    detail: str  # what was measured
    fix: str  # what to do

    @property
    def where(self) -> str:
        name = self.module or "(root)"
        return f"{name} ({self.kind})" if self.kind else name

    def line(self) -> str:
        return f"{self.risk} in {self.where}: {self.detail}; {self.fix}"


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if math.isinf(x):
        return "-"
    return f"{x:.3g}"


def _bits(x: float) -> str:
    return "-" if math.isinf(x) else f"{math.floor(x * 10) / 10:.1f}"  # never rounded up


@dataclasses.dataclass
class CalibrationReport:
    """Per-module ranges of a model on sample data, judged under a field and fraction bits.

    ``modules`` are in program order; their ``path`` is the torch ``named_modules`` name
    (graph route, ``""`` for the root) or the Flax module path joined with dots (Flax route).
    ``inputs`` holds the model's inputs.  ``runtime`` is the SPU settings calibrated for
    (the protocol's defaults, e.g. ``fxp_exp_mode``).
    """

    source: str
    route: str
    field: str
    fraction_bits: int
    protocol: str
    runtime: Mapping[str, Any]
    samples: str
    inputs: ModuleStats
    modules: list[ModuleStats]

    # -- judging -------------------------------------------------------------------------------

    def _setting(self, field: str | None, fraction_bits: int | None) -> tuple[str, int]:
        field = (field or self.field).upper()
        if fraction_bits is None:
            fraction_bits = (
                self.fraction_bits if field == self.field else FIELD_FRACTION_BITS.get(field, 0)
            )
        limits(field, fraction_bits)  # a ConfigError for a bad setting
        return field, fraction_bits

    def all_stats(self) -> list[ModuleStats]:
        return [self.inputs, *self.modules]

    @staticmethod
    def headroom(st: ModuleStats, field: str, fraction_bits: int) -> float:
        """Bits between the module's largest magnitudes and the limits (inf: nothing measured)."""
        product_limit, value_limit, _ = limits(field, fraction_bits)
        h = math.inf
        if st.max_product > 0:
            h = min(h, math.log2(product_limit / st.max_product))
        if st.max_value > 0:
            h = min(h, math.log2(value_limit / st.max_value))
        return h

    def problems(self, field: str | None = None, fraction_bits: int | None = None) -> list[Problem]:
        """Every risk under the setting (default: the one calibrated for), in program order."""
        field, f = self._setting(field, fraction_bits)
        out: list[Problem] = []
        for st in self.all_stats():
            for p in self._module_problems(st, field, f):
                if not p.fix:
                    p = dataclasses.replace(p, fix=self._range_fix(st))
                out.append(p)
        return out

    def _module_problems(self, st: ModuleStats, field: str, f: int) -> list[Problem]:
        product_limit, value_limit, resolution = limits(field, f)
        setting = f"{field} with {f} fraction bits"
        out: list[Problem] = []

        def add(risk: str, detail: str, fix: str) -> None:
            out.append(Problem(st.path, st.kind, risk, detail, fix))

        h = self.headroom(st, field, f)
        over = []
        if st.max_product > product_limit:
            over.append(
                f"{st.product_op} reaches {_fmt(st.max_product)}, above the product limit "
                f"{_fmt(product_limit)} of {setting}"
            )
        if st.max_value > value_limit:
            over.append(
                f"{st.value_op} reaches {_fmt(st.max_value)}, above the encoding limit "
                f"{_fmt(value_limit)} of {setting}"
            )
        if st.saturated_misuse:
            over.append(
                f"{st.saturated_misuse} mask-sized values (>= 1e30 or inf) reach "
                f"{st.misuse_op}, where MPC wraps them (only max/select/one addition/exp keep "
                "them right)"
            )
        if over:
            add(OVERFLOW, "; ".join(over), "")  # the fix is filled in by problems()
        elif h < HEADROOM_BITS:
            by_product = st.max_product > 0 and h == math.log2(product_limit / st.max_product)
            op, what = (st.product_op, "product") if by_product else (st.value_op, "encoding")
            add(
                LOW_HEADROOM, f"{op} is within {_bits(h)} bits of the {what} limit of {setting}", ""
            )
        err = float(st.rel_error[f])
        if err > PRECISION_TOLERANCE:
            add(
                PRECISION,
                f"{st.error_op[f]} loses {100 * err:.0f}% of its norm to rounding at resolution "
                f"{_fmt(resolution)} ({int(st.zeroed[f])} nonzero values become 0; the smallest "
                f"that matter are {_fmt(st.smallest)})",
                "use more fraction bits (fraction_bits=...) or FM128, or scale these values up",
            )
        if st.min_divisor < DIVISOR_STEPS * resolution:
            zero = st.min_divisor < resolution
            add(
                DIVISOR,
                f"{st.divisor_op} divides by {_fmt(st.min_divisor)}"
                + (
                    ", which is 0 in fixed point (the quotient is garbage)"
                    if zero
                    else f", only {st.min_divisor / resolution:.0f} resolution steps"
                ),
                "keep divisors away from 0 (add an epsilon) or use more fraction bits",
            )
        beyond = []
        for function, (arg, op) in st.function_args.items():
            limit = function_input_limit(function, f)
            if arg >= limit:
                what = "a divisor of div" if function == "divisor" else f"{op}'s argument"
                beyond.append(
                    f"{what} reaches {_fmt(arg)}, beyond {_fmt(limit)} where SPU's "
                    f"{'division' if function == 'divisor' else op} is right with {f} fraction bits"
                )
        if beyond:
            add(
                FUNCTION_RANGE,
                "; ".join(beyond),
                "scale these values down, or use more fraction bits (the range doubles with each)",
            )
        if st.negative:
            add(
                DOMAIN,
                f"{st.negative} arguments of {st.negative_op} are outside its domain (NaN in "
                "plaintext, an ordinary number under MPC)",
                "clamp the argument first, e.g. torch.clamp(x, min=1e-6)",
            )
        if st.nan:
            add(
                NAN,
                f"{st.nan_op} makes {st.nan} NaN values from finite inputs (under MPC they are "
                "ordinary numbers)",
                "guard the operation (e.g. a divisor or an inf - inf) in the model",
            )
        mode = self.runtime.get("fxp_exp_mode", "EXP_DEFAULT")
        if mode in ("EXP_TAYLOR", "EXP_DEFAULT"):
            iters = int(self.runtime.get("fxp_exp_iters") or 8)
            lowest = -(2.0**iters)
            if st.min_exp_arg < lowest:
                add(
                    TAYLOR,
                    f"exp gets {_fmt(st.min_exp_arg)}, below {_fmt(lowest)}, where SPU's Taylor "
                    f"exp ({mode}) is not exp (it gives a large number, not 0)",
                    "use runtime={'fxp_exp_mode': 'EXP_PADE'} (ppml-torch's default)",
                )
        return out

    def _range_fix(self, st: ModuleStats) -> str:
        rec = self.recommend()
        if rec is not None and rec != (self.field, self.fraction_bits):
            return f"use field={rec[0]!r}, fraction_bits={rec[1]} (calibrate's recommendation)"
        fits = self.fits(st)
        if fits != "none":
            return f"use a setting where this module fits ({fits}) and scale the others"
        return f"scale the inputs or weights of {st.label} down; no field/fraction bits hold it"

    def ok_under(self, field: str, fraction_bits: int) -> bool:
        """True when no module has a risk a field / fraction bits setting can remove."""
        return not any(
            p.risk in RANGE_RISKS
            for st in self.all_stats()
            for p in self._module_problems(st, field, fraction_bits)
        )

    def recommend(self) -> tuple[str, int] | None:
        """The setting without overflow, low headroom, precision or divisor risks, or None.

        The calibrated setting if it qualifies; else among the FM64 fraction bits open_session
        accepts (:data:`CANDIDATES`: 8..26), the nearest 18 (more on a tie); else among FM128's
        (8..58), the nearest 26.
        """
        if self.ok_under(self.field, self.fraction_bits):
            return self.field, self.fraction_bits
        for field in FIELDS:
            default = FIELD_FRACTION_BITS[field]
            fs = sorted(
                (f for fld, f in CANDIDATES if fld == field), key=lambda f: (abs(f - default), -f)
            )
            for f in fs:
                if self.ok_under(field, f):
                    return field, f
        return None

    def fits(self, st: ModuleStats) -> str:
        """The candidate fraction bits under which one module has no range risk, e.g. ``FM64 12-22``."""
        for field in FIELDS:
            good = [
                f
                for fld, f in CANDIDATES
                if fld == field
                and not any(p.risk in RANGE_RISKS for p in self._module_problems(st, field, f))
            ]
            if good:
                spans, start = [], good[0]
                for a, b in zip(good, [*good[1:], None], strict=True):
                    if b != a + 1:
                        spans.append(f"{start}-{a}" if a != start else f"{a}")
                        start = b
                return f"{field} {','.join(spans)}"
        return "none"

    # -- the gate ------------------------------------------------------------------------------

    def check(
        self,
        field: str | None = None,
        fraction_bits: int | None = None,
        *,
        strict: bool = False,
    ) -> None:
        """Raise :class:`CalibrationError` if the run is predicted to give a wrong number.

        ``field``/``fraction_bits``: the setting of the run about to start (default: the one
        calibrated for; the measurements are re-judged, nothing is run).  Refused: overflow
        risk, sqrt/log of negative, NaN, exp below the Taylor range; with ``strict=True`` also
        low headroom, precision loss and divisors near zero.  The message is one line naming
        the first module, the risk and the fix, and how many more problems there are.
        """
        field, f = self._setting(field, fraction_bits)
        found = [p for p in self.problems(field, f) if strict or p.risk in BLOCKING]
        if not found:
            return
        first = found[0]
        more = f" (and {len(found) - 1} more: {self.summary(found[1:])})" if len(found) > 1 else ""
        raise CalibrationError(
            f"calibration of {self.source} predicts a wrong result on {field} with {f} fraction "
            f"bits: {first.line()}{more}"
        )

    @staticmethod
    def summary(problems: Sequence[Problem]) -> str:
        counts: dict[str, list[str]] = {}
        for p in problems:
            counts.setdefault(p.risk, []).append(p.module or "(root)")
        return "; ".join(
            f"{risk} in {', '.join(mods[:3])}{' ...' if len(mods) > 3 else ''}"
            for risk, mods in counts.items()
        )

    # -- printing ------------------------------------------------------------------------------

    def __str__(self) -> str:
        """``print(report)`` prints the table (:meth:`describe` at the calibrated setting)."""
        return self.describe()

    def describe(self, field: str | None = None, fraction_bits: int | None = None) -> str:
        """The report as a table, one row per module, risks named plainly."""
        field, f = self._setting(field, fraction_bits)
        product_limit, value_limit, resolution = limits(field, f)
        exp_mode = self.runtime.get("fxp_exp_mode", "EXP_DEFAULT")
        lines = [
            f"calibration of {self.source} ({self.route} route) on {self.samples}",
            f"setting: {field} with {f} fraction bits ({self.protocol}, {exp_mode}); "
            f"|product| < {_fmt(product_limit)}, |value| < {_fmt(value_limit)}, resolution "
            f"{_fmt(resolution)}",
            "headroom = log2(limit / largest magnitude), products against the product limit; "
            f"wanted >= {HEADROOM_BITS:g} bits.  smallest: the smallest magnitude that matters",
            "",
        ]
        header = ("module", "kind", "max |value|", "max product", "headroom", "smallest", "fits")
        rows = []
        for st in self.all_stats():
            if st.equations == 0 and st.elements == 0:
                continue
            probs = self._module_problems(st, field, f)  # (fixes are in the list below)
            risks = ", ".join(dict.fromkeys(p.risk for p in probs))
            if st.saturated and not st.saturated_misuse:
                risks = ", ".join(
                    x for x in (risks, f"{st.saturated} mask values (clamped, ok)") if x
                )
            rows.append(
                (
                    st.label,
                    st.kind,
                    _fmt(st.max_value),
                    _fmt(st.max_product) if st.max_product else "-",
                    _bits(self.headroom(st, field, f)),
                    _fmt(st.smallest),
                    self.fits(st),
                    risks or "ok",
                )
            )
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  risks")
        lines.append("-" * (sum(widths) + 2 * len(widths) + 5))
        for r in rows:
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
            )
        problems = self.problems(field, f)
        lines.append("")
        if problems:
            lines.append(f"{len(problems)} problem(s):")
            lines.extend(f"  {p.line()}" for p in problems)
        else:
            lines.append("no risks found on this sample")
        rec = self.recommend()
        if rec is None:
            lines.append(
                "recommended: no field/fraction bits setting removes the range risks; change "
                "the model or its inputs (see the fixes above)"
            )
        elif rec == (field, f):
            lines.append(f"recommended: {field} with {f} fraction bits (this setting)")
        else:
            lines.append(f"recommended: {rec[0]} with {rec[1]} fraction bits")
        return "\n".join(lines)
