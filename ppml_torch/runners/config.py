"""Backends, protocols, fields, parties and SPU's fixed-point knobs: validated in one place.

Everything here is checked before any compilation or secret sharing starts, and every error
is one line naming the fix.
"""

from __future__ import annotations

import dataclasses
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
FIELDS = ("FM64", "FM128")
DEFAULT_PARTIES = ("alice", "bob", "carol")

# SPU RuntimeConfig knobs a user may set (``runtime={...}``), with the values ppml-torch uses
# when the user says nothing.  These are SPU 0.9.3's own defaults except where noted; they are
# the same for every protocol, with the per-protocol fraction bits below.
#   fxp_fraction_bits   fixed-point fraction bits (default 18 on FM64, 26 on FM128; must leave
#                       room for a product: 1..31 on FM64, 1..63 on FM128, see fixed_point_range)
#   fxp_exp_mode        EXP_DEFAULT | EXP_PADE | EXP_TAYLOR | EXP_PRIME
#   fxp_exp_iters       iterations of the Taylor exp (0 = SPU's default, 8)
#   fxp_log_mode        LOG_DEFAULT | LOG_PADE | LOG_NEWTON | LOG_MINMAX
#   fxp_log_iters, fxp_log_orders
#   sigmoid_mode        SIGMOID_DEFAULT | SIGMOID_MM1 | SIGMOID_SEG3 | SIGMOID_REAL
#   fxp_div_goldschmidt_iters
#   enable_lower_accuracy_rsqrt
#   beaver_type         (SEMI2K) TrustedFirstParty | TrustedThirdParty | MultiParty
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
FIELD_BITS = {"FM64": 64, "FM128": 128}


def max_fraction_bits(field: str) -> int:
    """The most fraction bits a field allows: ``2 * f + 2 <= bits`` (see :func:`fixed_point_range`)."""
    return (FIELD_BITS[field] - 2) // 2


def fixed_point_range(field: str, fraction_bits: int) -> tuple[float, float]:
    """``(max_abs, resolution)`` of SPU's fixed point with ``fraction_bits`` in ``field``.

    SPU encodes a real ``x`` as the integer ``round(x * 2**f)`` in a ring of ``k`` bits (k = 64
    for FM64, 128 for FM128), read as signed: one bit is the sign, so an encoded value must stay
    below ``2**(k-1)`` in magnitude.  A product of two encoded values carries ``2f`` fraction
    bits before SPU truncates it back to ``f``, so the product itself must fit::

        |x * y| * 2**(2f) < 2**(k-1)   ->   |x * y| < 2**(k - 1 - 2f)

    The rule ppml-torch enforces (in :func:`resolve`, before anything starts) is that a product
    keeps at least one integer bit: ``1 <= f`` and ``2f + 1 + 1 <= k``, i.e. f in 1..31 on FM64
    and 1..63 on FM128.  Within it, the result is:

    * ``max_abs = 2**(k - 1 - 2f)``: the largest magnitude of a product of two values, and so of
      every intermediate that is multiplied (a matmul's accumulated sums included); beyond it
      the value wraps around the ring and the result is garbage, not an error;
    * ``resolution = 2**-f``: the step between two representable values.

    FM64 with SPU's default f=18 gives max_abs 2**27 (about 1.3e8) and resolution 3.8e-6.
    """
    if field not in FIELD_BITS:
        raise ConfigError(f"unknown field {field!r}; use one of {', '.join(FIELDS)}")
    _check_fraction_bits(field, fraction_bits)
    k = FIELD_BITS[field]
    return float(2 ** (k - 1 - 2 * fraction_bits)), float(2.0**-fraction_bits)


def _check_fraction_bits(field: str, f: Any) -> None:
    hi = max_fraction_bits(field)
    if isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= hi:
        raise ConfigError(
            f"fxp_fraction_bits={f!r} does not fit {field}: a product of two fixed-point values "
            f"needs 2f fraction bits plus a sign and an integer bit in {FIELD_BITS[field]} bits; "
            f"use an integer in 1..{hi} (default {FIELD_FRACTION_BITS[field]})"
        )


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
    field = (field or "FM64").upper()
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
