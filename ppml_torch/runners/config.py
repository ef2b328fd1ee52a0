"""Backends, protocols, fields, parties and SPU's fixed-point knobs: validated in one place.

Everything here is checked before any compilation or secret sharing starts, and every error
is one line naming the fix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import PpmlError

BACKENDS = ("cpu", "spu", "secretflow")
# What SPU compiles (backend "spu"): SPU's own JAX frontend (an XLA HLO proto) or JAX's StableHLO
# text.  Both give the same SPU program (tests/runners/test_compile.py); the XLA route is the
# one SPU itself tests, hence the default everywhere (open_session, compile_for_spu).
IRS = ("xla", "stablehlo")
DEFAULT_IR = "xla"
PROTOCOLS = {"SEMI2K": 2, "CHEETAH": 2, "ABY3": 3}  # protocol -> number of parties
DEFAULT_FIELD = "FM64"  # the field of a run that names none
FIELDS = (DEFAULT_FIELD, "FM128")
DEFAULT_PARTIES = ("alice", "bob", "carol")

# SPU RuntimeConfig knobs a user may set (``runtime={...}``), with the values ppml-torch uses
# when the user says nothing.  These are SPU 0.9.3's own defaults except where noted; they are
# the same for every protocol, with the per-protocol fraction bits below.
#   fxp_fraction_bits   fixed-point fraction bits (default 18 on FM64, 26 on FM128; 8..26 on
#                       FM64, 8..58 on FM128: see FIXED_POINT_RULE below)
#   fxp_exp_mode        EXP_DEFAULT | EXP_PADE | EXP_TAYLOR | EXP_PRIME
#   fxp_exp_iters       iterations of the Taylor exp (0 = SPU's default, 8)
#   fxp_log_mode        LOG_DEFAULT | LOG_PADE | LOG_NEWTON | LOG_MINMAX
#   fxp_log_iters, fxp_log_orders
#   sigmoid_mode        SIGMOID_DEFAULT | SIGMOID_MM1 | SIGMOID_SEG3 | SIGMOID_REAL
#   fxp_div_goldschmidt_iters
#   enable_lower_accuracy_rsqrt
#   beaver_type         (SEMI2K) TrustedFirstParty | TrustedThirdParty | MultiParty
# The iteration counts take 0 (SPU's default) or a value in KNOB_RANGES.
KNOBS = (
    "fxp_fraction_bits",
    "fxp_exp_mode",
    "fxp_exp_iters",
    "fxp_log_mode",
    "fxp_log_iters",
    "fxp_log_orders",
    "sigmoid_mode",
    "fxp_div_goldschmidt_iters",
    "enable_lower_accuracy_rsqrt",
    "sine_cosine_iters",
    "beaver_type",
    "trunc_allow_msb_error",
    "experimental_disable_mmul_split",
)

# Defaults per protocol, applied under the user's own settings.  SPU's defaults are used for
# everything not listed; the table is printed by `ppml-torch protocols`.  Where ppml-torch
# departs from SPU's defaults, accuracy comes first:
#   fxp_exp_mode=EXP_PADE: SPU's default Taylor exp breaks for arguments below about -256,
#     which softmax masks produce (HF's Flax GPT-2 adds finfo.min): tiny GPT-2 logits off by
#     0.34 with Taylor, 1.7e-3 with Pade, for about 10% more bytes (ABY3, 2 layers, width 64).
#     Set runtime={"fxp_exp_mode": "EXP_TAYLOR"} to trade that accuracy for speed.
#   sigmoid_mode=SIGMOID_REAL: 1/(1+exp(-x)) instead of SPU's default, a one-order minimax
#     line 0.5 + 0.125x (SIGMOID_MM1) that leaves [0, 1] for |x| > 4.
_ACCURATE = {"fxp_exp_mode": "EXP_PADE", "sigmoid_mode": "SIGMOID_REAL"}
PROTOCOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "SEMI2K": dict(_ACCURATE),
    "CHEETAH": dict(_ACCURATE),
    "ABY3": dict(_ACCURATE),
}
# FM128 has room for more fraction bits; SPU's own default there is 26.
FIELD_FRACTION_BITS = {"FM64": 18, "FM128": 26}


class ConfigError(PpmlError, ValueError):
    """Bad runner configuration (backend, protocol, field, parties, owners)."""


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    backend: str
    protocol: str | None
    field: str | None
    parties: tuple[str, ...]
    runtime: Mapping[str, Any]

    def describe(self) -> str:
        if self.backend == "cpu":
            return "cpu (plaintext JAX)"
        return f"{self.backend} {self.protocol}/{self.field} parties={','.join(self.parties)}"


def resolve(
    backend: str,
    protocol: str | None = None,
    field: str | None = None,
    parties: Sequence[str] | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> SessionConfig:
    """Validate a runner configuration and fill in defaults, before anything starts.

    Knob values are checked against SPU's ``RuntimeConfig`` (:func:`check_knob_values`; this
    imports ``spu.spu_pb2``, about half a second, but no runtime and no Ray).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "cpu":
        if runtime:
            raise ConfigError("backend 'cpu' takes no SPU runtime settings; drop runtime=...")
        cpu_parties = tuple(parties) if parties else DEFAULT_PARTIES
        _check_party_names(cpu_parties)
        return SessionConfig("cpu", None, None, cpu_parties, {})

    protocol = (protocol or "SEMI2K").upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)} "
            "(SEMI2K/CHEETAH: 2 parties, ABY3: 3 parties)"
        )
    field = (field or DEFAULT_FIELD).upper()
    if field not in FIELDS:
        raise ConfigError(f"unknown field {field!r}; use one of {', '.join(FIELDS)}")
    n = PROTOCOLS[protocol]
    parties = tuple(parties) if parties else DEFAULT_PARTIES[:n]
    _check_party_names(parties)
    if len(parties) != n:
        raise ConfigError(
            f"protocol {protocol} needs exactly {n} parties, got {len(parties)} "
            f"({', '.join(parties)}); pass parties=[...] with {n} names"
            + (" or use protocol='ABY3' for 3 parties" if len(parties) == 3 else "")
        )
    if runtime is not None and not isinstance(runtime, Mapping):
        raise ConfigError(
            f"runtime must be a dict of SPU settings like {{'fxp_exp_mode': 'EXP_TAYLOR'}}, got "
            f"{type(runtime).__name__} {runtime!r}; settable: {', '.join(KNOBS)}"
        )
    runtime = dict(runtime or {})
    unknown = sorted(set(runtime) - set(KNOBS))
    if unknown:
        raise ConfigError(f"unknown SPU runtime setting(s) {unknown}; settable: {', '.join(KNOBS)}")
    merged = dict(PROTOCOL_DEFAULTS[protocol])
    merged["fxp_fraction_bits"] = FIELD_FRACTION_BITS[field]
    merged.update(runtime)
    check_knob_values(merged, field)
    return SessionConfig(backend, protocol, field, parties, merged)


def check_knob_values(runtime: Mapping[str, Any], field: str) -> None:
    """Check every knob value against SPU's RuntimeConfig (imports spu_pb2 only, about 0.5 s).

    Enum knobs take one of the enum's names (``"EXP_TAYLOR"``), flags a bool, counts a
    non-negative int; ``fxp_fraction_bits`` must leave room for a product
    (:func:`fixed_point_range`).
    """
    from google.protobuf.descriptor import FieldDescriptor
    from spu import spu_pb2

    fields = spu_pb2.RuntimeConfig.DESCRIPTOR.fields_by_name
    for key, value in runtime.items():
        if key == "fxp_fraction_bits":
            _check_fraction_bits(field, value)
            continue
        fd = fields[key]
        if fd.enum_type is not None:
            names = list(fd.enum_type.values_by_name)
            if value not in names:
                raise ConfigError(
                    f"SPU runtime setting {key}={value!r} is invalid; use one of {', '.join(names)}"
                )
        elif fd.type == FieldDescriptor.TYPE_BOOL:
            if not isinstance(value, bool):
                raise ConfigError(
                    f"SPU runtime setting {key}={value!r} is invalid; use True or False"
                )
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"SPU runtime setting {key}={value!r} is invalid; use a non-negative integer"
            )
        elif key in KNOB_RANGES and value != 0:
            lo, hi = knob_range(key, runtime, field)
            if not lo <= value <= hi:
                raise ConfigError(
                    f"SPU runtime setting {key}={value} gives wrong numbers: {KNOB_RANGES[key][2]}; "
                    f"use 0 (SPU's default) or {lo}..{hi} (measured by scripts/measure_knob_ranges.py)"
                )


def _check_party_names(parties: Sequence[str]) -> None:
    if len(set(parties)) != len(parties):
        raise ConfigError(f"duplicate party names in {list(parties)}")
    for p in parties:
        if not isinstance(p, str) or not p.isidentifier():
            raise ConfigError(f"party names must be identifiers like 'alice'; got {p!r}")


def spu_runtime_config(cfg: SessionConfig, *, profile: bool = True):
    """The ``spu.RuntimeConfig`` protobuf for a session (imports spu)."""
    from spu import spu_pb2

    rc = spu_pb2.RuntimeConfig(
        protocol=spu_pb2.ProtocolKind.Value(cfg.protocol),
        field=spu_pb2.FieldType.Value(cfg.field),
    )
    fields = rc.DESCRIPTOR.fields_by_name
    for key, value in cfg.runtime.items():  # values were checked by resolve()
        enum = fields[key].enum_type
        setattr(rc, key, enum.values_by_name[value].number if enum is not None else value)
    # Communication figures come from SPU's per-op profile (see runners/comm.py).
    rc.enable_pphlo_profile = profile
    return rc


def spu_runtime_config_dict(cfg: SessionConfig, *, profile: bool = True) -> dict[str, Any]:
    """The same configuration as a JSON-able dict (what SecretFlow's cluster_def takes)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        spu_runtime_config(cfg, profile=profile), preserving_proto_field_name=True
    )


# --- the range of SPU's fixed point (measured with spu 0.9.3b0, SEMI2K and ABY3) -------------
# A real x is held as the integer round(x * 2**f) in a ring of k bits (FM64: k=64, FM128: 128).
# * Inputs: SPU's encoder clamps |x| to 2**(k-2-f) (FM64/18 bits: 1.76e13, FM128/26: 1.27e30);
#   NaN becomes 0 and +-inf the clamp value.  Sums may reach 2**(k-1-f) before they wrap.
# * Products: a*b is 2f fraction bits wide before it is truncated back to f, so a product (or
#   a dot product's sum of products) is right only while |a*b| < 2**(k-2-2f) (FM64/18: 6.7e7,
#   FM128/26: 1.9e22); between that and 2**(k-1-2f) truncation fails with some probability
#   (seen under ABY3/FM128), beyond it the result is wrong every time (FM64: x*x for x = 1e5
#   gives 6.8e7).  Inputs cannot show this; calibration of the intermediate values does.
# * Resolution: 2**-f (FM64/18: 3.8e-6); smaller nonzero values become 0.
FIELD_BITS = {"FM64": 64, "FM128": 128}

# FIXED_POINT_RULE: the settings open_session accepts must hold ordinary numbers, measured
# with scripts/measure_knob_ranges.py (SEMI2K; the products a*b for a, b in {0.3, 3, 10, 100,
# 1000}):
# * at least MIN_FRACTION_BITS fraction bits: resolution 2**-8 = 0.0039 or finer (f=4 gave
#   10*0.3 = 2.5, f=1 gave 0);
# * a product limit 2**(k-2-2f) of at least MIN_PRODUCT_LIMIT: products up to 1024 right
#   (FM64 f=30, limit 4: 10*1 gave -6 and 100*100 gave 0; f=26, limit 1024: 1000*3 wrong, the
#   rest right).  So 8..26 fraction bits on FM64 and 8..58 on FM128.
MIN_FRACTION_BITS = 8
MIN_PRODUCT_LIMIT = 2.0**10

# Iteration knobs: (lowest, highest or None for "fraction bits - 2", what goes wrong outside).
# Measured (scripts/measure_knob_ranges.py, worst error relative to max(|want|, 1)): the Taylor
# exp over [-8, 4] is off by 35% with 4 iterations, 11% with 6, 3% with 8 (SPU's default), and
# breaks once x / 2**n drops below the resolution: n = f - 1 already gives 28% (f=24, 26, 40),
# n=1000 gives exp(1) = 1.0.  log (Newton) over [0.05, 60]: 0.22 with 1 iteration or order,
# 0.033 from 2 on.  1/x with 1 Goldschmidt iteration: 0.05 off; 2 or more: 2e-4.  sin/cos:
# 1e-4 from 1 iteration on.  The upper bounds of 32 keep a typo from costing hours.
KNOB_RANGES: dict[str, tuple[int, int | None, str]] = {
    "fxp_exp_iters": (
        6,
        None,
        "the Taylor exp is off by 35% or more below 6 iterations and "
        "breaks (exp(1) = 1) once 2**-iterations is below the resolution",
    ),
    "fxp_log_iters": (2, 32, "log is off by 0.22 with 1 iteration"),
    "fxp_log_orders": (2, 32, "log is off by 0.14 with order 1"),
    "fxp_div_goldschmidt_iters": (1, 32, "more than 32 iterations only cost"),
    "sine_cosine_iters": (1, 32, "more than 32 iterations only cost"),
}


def knob_range(key: str, runtime: Mapping[str, Any], field: str) -> tuple[int, int]:
    """The values ``key`` may take besides 0, under ``runtime``'s fraction bits on ``field``."""
    lo, hi, _ = KNOB_RANGES[key]
    if hi is None:
        f = runtime.get("fxp_fraction_bits") or FIELD_FRACTION_BITS[field]
        hi = int(f) - 2
    return lo, hi


def fixed_point_range(field: str, fraction_bits: int) -> tuple[float, float]:
    """(largest magnitude an input may have, resolution) of SPU fixed point.

    Inputs must satisfy ``|x| < 2**(k - 2 - f)`` (k = 64 for FM64, 128 for FM128,
    f = ``fraction_bits``): SPU's encoder clamps anything larger.  Resolution is ``2**-f``.
    Products need more room: see :func:`fixed_point_product_limit`.
    """
    k = _field_bits(field)
    _check_fraction_bits(field, fraction_bits)
    return 2.0 ** (k - 2 - fraction_bits), 2.0**-fraction_bits


def fixed_point_product_limit(field: str, fraction_bits: int) -> float:
    """Largest ``|a*b|`` (or sum of products in a dot product) SPU computes right every time.

    A product carries 2f fraction bits before truncation, and SPU's truncation needs one
    spare bit: ``|a*b| < 2**(k - 2 - 2f)`` (FM64/18: 6.7e7, FM128/26: 1.9e22).
    """
    k = _field_bits(field)
    _check_fraction_bits(field, fraction_bits)
    return 2.0 ** (k - 2 - 2 * fraction_bits)


# SPU's approximations of some functions are right only below an argument that depends on the
# fraction bits f (not on the field or protocol).  Measured on spu 0.9.3b0, SEMI2K and ABY3,
# FM64 with f = 12, 18, 24 and FM128 with f = 26, 40, arguments 2**(i/4)
# (scripts/measure_function_ranges.py): beyond it the result is a wrong number, no error
# (FM64/18: sqrt(2**17) is wrong, (x/2)/x for x = 2**18 too).  Exponent of the limit minus f:
FUNCTION_RANGE_EXPONENTS = {"sqrt": -1, "rsqrt": -1, "log": 1, "divisor": 0}


def function_input_limit(op: str, fraction_bits: int) -> float:
    """Largest argument SPU's ``op`` computes right: ``sqrt``/``rsqrt`` below ``2**(f-1)``,
    ``log`` below ``2**(f+1)``, a secret divisor below ``2**f`` (FM64/18: 1.31e5, 5.24e5,
    2.62e5).  See :data:`FUNCTION_RANGE_EXPONENTS`."""
    return 2.0 ** (fraction_bits + FUNCTION_RANGE_EXPONENTS[op])


def max_fraction_bits(field: str) -> int:
    """The most fraction bits ``field`` allows: the product limit ``2**(k-2-2f)`` stays at least
    :data:`MIN_PRODUCT_LIMIT` (FM64: 26, FM128: 58)."""
    return int((_field_bits(field) - 2 - math.log2(MIN_PRODUCT_LIMIT)) // 2)


def allowed_fraction_bits(field: str) -> range:
    """Every fraction-bit setting the rule accepts on ``field`` (FM64: 8..26, FM128: 8..58)."""
    return range(MIN_FRACTION_BITS, max_fraction_bits(field) + 1)


def _field_bits(field: str) -> int:
    if field not in FIELD_BITS:
        raise ConfigError(f"unknown field {field!r}; use one of {', '.join(FIELDS)}")
    return FIELD_BITS[field]


def _check_fraction_bits(field: str, fraction_bits: Any) -> None:
    lo, hi = MIN_FRACTION_BITS, max_fraction_bits(field)
    f = fraction_bits
    if isinstance(f, bool) or not isinstance(f, int) or not lo <= f <= hi:
        why = (
            f"its resolution 2**-{f} cannot hold ordinary values (at least {lo} bits: 2**-{lo})"
            if isinstance(f, int) and not isinstance(f, bool) and 0 < f < lo
            else f"a product a*b is held with 2f fraction bits in {FIELD_BITS[field]} bits and "
            f"must stay right up to |a*b| = {MIN_PRODUCT_LIMIT:g} (at most {hi} bits)"
        )
        raise ConfigError(
            f"fxp_fraction_bits={f!r} does not fit {field}: {why}; use an integer in {lo}..{hi} "
            f"(default {FIELD_FRACTION_BITS[field]}; rule: FIXED_POINT_RULE in "
            "ppml_torch/runners/config.py)"
        )


def session_fraction_bits(cfg: SessionConfig) -> int:
    """The fraction bits a session runs with (0 in the runtime settings means SPU's default)."""
    f = int(cfg.runtime.get("fxp_fraction_bits") or 0)
    return f or FIELD_FRACTION_BITS[cfg.field or DEFAULT_FIELD]
