"""Secret shares built with numpy for the in-process SPU runtimes (ABY3 and SEMI2K on FM64).

SPU's ``Io.make_shares`` encodes a value, splits it into random shares and serializes each
party's share, at 110-190 ns per element on this machine (``perf``: copies between its
arrays, protobuf strings and Python bytes, and page faults): 17-40 s for GPT-2-small's 124M
weights.  :class:`ShareMaker` builds the very same shares in a few numpy passes:

* the fixed-point encoding SPU uses (``x * 2**f`` truncated towards zero, in the 64-bit ring;
  int32 values as they are);
* additive splits ``x = s0 + s1 (+ s2)`` whose random parts are an AES-128-CTR keystream
  (OpenSSL's libcrypto, a fresh random key and counter from ``os.urandom`` per call: the
  construction SPU's own PRG uses), so each party's share alone is uniformly random;
* each party's share as SPU lays it out (ABY3: the replicated pair ``(s_i, s_{i+1})`` per
  element; SEMI2K: ``s_i``), in one protobuf chunk, with the metadata SPU writes itself.

Soundness (what makes these shares SPU's shares, not merely values that reconstruct):

* Randomness: every call of :meth:`ShareMaker.make` (one per array, so one per put piece)
  draws a fresh 128-bit AES key and a fresh 128-bit initial counter from ``os.urandom`` (the
  OS CSPRNG); nothing is kept between calls, so no key/counter pair is ever used for two
  arrays or two puts.  Within one call the counter only moves forward, so the ABY3 masks
  ``s1`` and ``s2`` come from disjoint blocks of one keystream.
* Distribution: SEMI2K: ``s1`` is the keystream and ``s0 = x - s1``, so each party's share
  alone is uniform in ``Z_2^64`` (as SPU's additive split).  ABY3: ``s1, s2`` are keystream,
  ``s0 = x - s1 - s2``; party ``i`` holds ``(s_i, s_{i+1})``, two independent uniform ring
  elements whatever ``x`` is -- the distribution of SPU's replicated shares.  CHEETAH (and
  every other protocol or field) is not built here: SPU's ``make_shares`` does it.
* Who builds them: as with SPU's ``make_shares``, the process holding the owner's value
  builds every party's share and hands each runtime only its own (this builder serves the
  in-process sessions, where all parties live in one process; ``secretflow`` runs share on
  the owner's own actor through SecretFlow).
* Encoding: floats ``x * 2**f`` truncated towards zero; values SPU would saturate or zero
  (``|x| >= 2**(62-f)``, inf, NaN) are left to ``make_shares`` (one max over the array).

Nothing is assumed about SPU's format without checking it: a maker is only enabled after it
reproduced ``make_shares`` on a probe of every dtype it handles (same metadata, same value
reconstructed by SPU's own ``Io``); otherwise, and for every other protocol, field, dtype or
visibility, :meth:`ShareMaker.make` returns ``None`` and the caller uses ``make_shares``.
Public values are left to SPU (they are not split).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

import numpy as np

_STORAGE = {"ABY3": 2, "SEMI2K": 1}  # ring elements each party holds per value
_AES_CHUNK = 1 << 30  # bytes per EVP_EncryptUpdate call (its length is a C int)


class _Aes:
    """AES-128-CTR keystream from OpenSSL's libcrypto (via ctypes), or unavailable."""

    def __init__(self) -> None:
        self.lib: Any = None
        name = ctypes.util.find_library("crypto")
        if name is None:
            return
        try:
            lib = ctypes.CDLL(name)
            lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
            lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
            lib.EVP_aes_128_ctr.restype = ctypes.c_void_p
            lib.EVP_EncryptInit_ex.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                ctypes.c_char_p,
            ]  # fmt: skip
            lib.EVP_EncryptUpdate.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p,
                ctypes.c_int,
            ]  # fmt: skip
        except (OSError, AttributeError):
            return
        self.lib = lib

    def fill(self, out: np.ndarray) -> None:
        """Overwrite the C-contiguous ``out`` with keystream under a fresh random key."""
        lib = self.lib
        ctx = lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        try:
            if lib.EVP_EncryptInit_ex(ctx, lib.EVP_aes_128_ctr(), None, os.urandom(16),
                                      os.urandom(16)) != 1:  # fmt: skip
                raise RuntimeError("EVP_EncryptInit_ex failed")
            raw = out.reshape(-1).view(np.uint8)
            raw[:] = 0  # encrypting zeros gives the keystream
            ptr, outl = raw.ctypes.data, ctypes.c_int(0)
            for start in range(0, raw.size, _AES_CHUNK):
                n = min(_AES_CHUNK, raw.size - start)
                if lib.EVP_EncryptUpdate(ctx, ptr + start, ctypes.byref(outl), ptr + start,
                                         n) != 1 or outl.value != n:  # fmt: skip
                    raise RuntimeError("EVP_EncryptUpdate failed")
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        if not v:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _chunk_header(nbytes: int) -> bytes:
    """``ValueChunkProto`` up to its content: total_bytes (field 1), chunk_offset 0 (left out,
    proto3's default) and the content's tag and length (field 3)."""
    return b"\x08" + _varint(nbytes) + b"\x1a" + _varint(nbytes)


class ShareMaker:
    """Shares of float32/int32 secrets for one SPU configuration, checked against SPU once.

    ``io``: SPU's ``spu.api.Io`` of the session (the reference for the probe);
    ``protocol``/``field``/``fraction_bits``: the session's.  :attr:`enabled` says whether
    :meth:`make` builds shares (else it always returns ``None``).
    """

    def __init__(self, io: Any, protocol: str, field: str, fraction_bits: int) -> None:
        self.io = io
        self.protocol, self.field, self.fbits = protocol, field, int(fraction_bits)
        self.world = {"ABY3": 3, "SEMI2K": 2}.get(protocol, 0)
        self.aes = _Aes()
        self._meta: dict[str, Any] = {}
        self.enabled = (
            protocol in _STORAGE and field == "FM64" and self.aes.lib is not None
        ) and self._probe()

    def _reference_meta(self, dtype: np.dtype) -> Any:
        """SPU's own metadata of a secret of ``dtype`` (from a one-element ``make_shares``)."""
        from spu import spu_pb2

        key = dtype.str
        if key not in self._meta:
            shares = self.io.make_shares(np.zeros(1, dtype), spu_pb2.Visibility.VIS_SECRET, -1)
            metas = []
            for s in shares:
                m = spu_pb2.ValueMetaProto()
                m.ParseFromString(s.meta)
                metas.append(m)
            if any(m != metas[0] for m in metas[1:]):
                raise ValueError("parties' metadata differ")  # caught by _probe: not enabled
            self._meta[key] = metas[0]
        return self._meta[key]

    def _probe(self) -> bool:
        """Build shares of small float32 and int32 probes and compare them with SPU's own
        ``make_shares`` of the same values: the same metadata, the same layout (under ABY3
        each party's second element is the next party's first, in SPU's shares too) and the
        same value in the ring (the sum of the parties' first elements), bit for bit.  The
        probes are compared share by share, never through ``Io.reconstruct``."""
        from spu import spu_pb2

        rng = np.random.default_rng(0)
        probes = [
            (rng.standard_normal((3, 5)) * 100).astype(np.float32),
            np.array([0.0, -0.0, 1.5, -1.5, 2.0**-20, -(2.0**-20), 1e6, -1e6], np.float32),
            np.array([1.0, -1.0], np.float32) * self._limit_below(),  # largest built
            np.array(-2.75, np.float32),
            rng.integers(-(2**31), 2**31 - 1, (7,), dtype=np.int64).astype(np.int32),
        ]
        try:
            for x in probes:
                ours = self._build(x)
                ref = self.io.make_shares(x, spu_pb2.Visibility.VIS_SECRET, -1)
                if [a.meta for a in ours] != [b.meta for b in ref]:
                    return False
                if not np.array_equal(self._ring_value(ours), self._ring_value(ref)):
                    return False
        except Exception:  # noqa: BLE001 - any failure means: leave sharing to SPU
            return False
        return True

    def _ring_value(self, shares: list[Any]) -> np.ndarray:
        """The ring elements ``shares`` stand for (uint64, flat), after checking that they are
        laid out as :meth:`_build` lays them out; raises ValueError otherwise."""
        from spu import spu_pb2

        per = _STORAGE[self.protocol]
        parts = []
        for share in shares:
            chunks = []
            for raw in share.share_chunks:
                c = spu_pb2.ValueChunkProto()
                c.ParseFromString(raw)
                chunks.append((c.chunk_offset, c.content))
            body = b"".join(content for _, content in sorted(chunks))
            parts.append(np.frombuffer(body, np.uint64).reshape(-1, per))
        if per == 2 and not all(
            np.array_equal(parts[i][:, 1], parts[(i + 1) % len(parts)][:, 0])
            for i in range(len(parts))
        ):
            raise ValueError("not replicated as (s_i, s_i+1)")
        return np.sum([p[:, 0] for p in parts], axis=0, dtype=np.uint64)

    def make(self, x: np.ndarray, visibility: int) -> list[Any] | None:
        """Every party's share of ``x`` (``spu.libspu.Share``, in rank order), or ``None`` when
        this maker does not handle it (then use ``make_shares``)."""
        from spu import spu_pb2

        if not self.enabled or visibility != spu_pb2.Visibility.VIS_SECRET:
            return None
        if x.dtype not in (np.float32, np.int32) or x.size == 0:
            return None
        if x.dtype == np.float32 and not np.abs(x).max() < 2.0 ** (62 - self.fbits):
            return None  # inf, NaN (max is NaN) or saturated by SPU's encoding: SPU's own
        return self._build(x)

    def _limit_below(self) -> np.float32:
        """The largest float32 below ``2**(62-f)``: the largest magnitude :meth:`make` builds."""
        return np.nextafter(np.float32(2.0 ** (62 - self.fbits)), np.float32(0))

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """SPU's encoding in the 64-bit ring: floats ``x * 2**f`` truncated towards zero (the
        product is exact: a power-of-two scaling), integers as they are."""
        flat = np.ascontiguousarray(x).reshape(-1)
        if flat.dtype == np.float32:
            return (flat * np.float32(2.0**self.fbits)).astype(np.int64).view(np.uint64)
        return flat.astype(np.int64).view(np.uint64)

    def _build(self, x: np.ndarray) -> list[Any]:
        from spu import libspu

        meta = type(self._reference_meta(x.dtype))()
        meta.CopyFrom(self._reference_meta(x.dtype))
        meta.ClearField("shape")
        if x.ndim:  # a 0-d value has no shape message in SPU's metadata
            meta.shape.dims.extend(int(d) for d in x.shape)
        meta_bytes = meta.SerializeToString()

        n, parties, per = x.size, self.world, _STORAGE[self.protocol]
        nbytes = 8 * per * n
        head = _chunk_header(nbytes)
        bufs = [np.empty(len(head) + nbytes, np.uint8) for _ in range(parties)]
        body = []
        for buf in bufs:
            buf[: len(head)] = np.frombuffer(head, np.uint8)
            body.append(buf[len(head) :].view(np.uint64).reshape(n, per))
        # party 1's share is random: (s1, s2) under ABY3, s1 under SEMI2K; s0 = x - s1 (- s2)
        self.aes.fill(body[1])
        s0 = np.subtract(self._encode(x), body[1][:, 0])
        if parties == 3:
            np.subtract(s0, body[1][:, 1], out=s0)
            body[0][:, 0], body[0][:, 1] = s0, body[1][:, 0]  # (s0, s1)
            body[2][:, 0], body[2][:, 1] = body[1][:, 1], s0  # (s2, s0)
        else:
            body[0][:, 0] = s0
        out = []
        for buf in bufs:
            share = libspu.Share()
            share.meta = meta_bytes
            share.share_chunks = [buf.tobytes()]
            out.append(share)
        return out
