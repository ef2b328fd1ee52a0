"""Shares built with numpy (``runners/shares.py``) are SPU's shares: same values, same
metadata, fresh randomness; anything the builder does not reproduce goes to SPU."""

from __future__ import annotations

import numpy as np
import pytest

import ppml_torch.runners.spu as spu_runner
from ppml_torch.runners.shares import ShareMaker
from tests.sessions import get_session

SECRET = 1  # spu_pb2.Visibility.VIS_SECRET
RANKS = {"ABY3": 3, "SEMI2K": 2}


def _values(rng):
    return [
        rng.standard_normal((4, 6)).astype(np.float32) * 50,
        np.array([0.0, -0.0, 1.25, -1.25, 3.9e-6, -3.9e-6, 7.0e5, -7.0e5], np.float32),
        (rng.standard_normal(3 * (1 << 12)).astype(np.float32)),  # many elements
        rng.integers(-(2**31), 2**31 - 1, (5, 3), dtype=np.int64).astype(np.int32),
        np.array(2.5, np.float32),  # a 0-d array
    ]


@pytest.mark.parametrize("protocol", ["ABY3", "SEMI2K"])
def test_built_shares_reconstruct_to_make_shares_values_bit_for_bit(protocol):
    """Catches an encoding that differs from SPU's (rounding instead of truncating towards
    zero, a wrong scale), a wrong share layout or wrong metadata."""
    s = get_session("spu", protocol, "FM64")
    maker = ShareMaker(s._io, protocol, "FM64", s._rc.fxp_fraction_bits)
    assert maker.enabled
    for x in _values(np.random.default_rng(1)):
        ours = maker.make(x, SECRET)
        ref = s._io.make_shares(x, SECRET, -1)
        assert len(ours) == RANKS[protocol]
        assert [a.meta for a in ours] == [b.meta for b in ref]
        got, want = s._io.reconstruct(ours), s._io.reconstruct(ref)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), x.dtype


@pytest.mark.parametrize("protocol", ["ABY3", "SEMI2K"])
def test_each_partys_share_is_fresh_randomness(protocol):
    """Catches shares that are the plain value, a mask reused by two puts (a fixed or cached
    AES key/counter: planted as ``os.urandom`` replaced by a constant, this test failed) or
    reused within one put (ABY3's ``s2`` equal to ``s1``): every party's share differs between
    two sharings of the same value and from the encoded value, and no mask element repeats."""
    s = get_session("spu", protocol, "FM64")
    maker = ShareMaker(s._io, protocol, "FM64", s._rc.fxp_fraction_bits)
    x = np.full(4096, 0.5, np.float32)
    encoded = np.full(4096, 1 << s._rc.fxp_fraction_bits, np.uint64)
    a, b = maker.make(x, SECRET), maker.make(x, SECRET)
    for sa, sb in zip(a, b, strict=True):
        ra = np.frombuffer(sa.share_chunks[0][-8 * 4096 * (len(a) - 1) :], np.uint64)
        rb = np.frombuffer(sb.share_chunks[0][-8 * 4096 * (len(a) - 1) :], np.uint64)
        assert np.mean(ra == rb) < 0.01
        assert np.mean(ra == np.resize(encoded, ra.shape)) < 0.01
        assert len(np.unique(ra)) > 0.99 * ra.size  # no repeated mask


def test_what_the_builder_does_not_reproduce_is_left_to_spu():
    s = get_session("spu", "ABY3", "FM64")
    maker = ShareMaker(s._io, "ABY3", "FM64", s._rc.fxp_fraction_bits)
    assert maker.make(np.zeros(3, np.float32), 2) is None  # public: not split
    assert maker.make(np.zeros(3, bool), SECRET) is None
    assert not ShareMaker(s._io, "CHEETAH", "FM64", 18).enabled
    assert not ShareMaker(s._io, "ABY3", "FM128", 26).enabled


def test_a_builder_that_differs_from_spu_is_not_enabled(monkeypatch):
    """The probe catches a planted encoding bug (rounding to nearest instead of SPU's
    truncation): the maker is then off and puts go through SPU's make_shares."""
    s = get_session("spu", "ABY3", "FM64")

    def rounded(self, x):
        flat = np.ascontiguousarray(x).reshape(-1)
        if flat.dtype == np.float32:
            scaled = np.rint(flat.astype(np.float64) * 2.0**self.fbits)
            return scaled.astype(np.int64).view(np.uint64)
        return flat.astype(np.int64).view(np.uint64)

    monkeypatch.setattr(ShareMaker, "_encode", rounded)
    assert not ShareMaker(s._io, "ABY3", "FM64", s._rc.fxp_fraction_bits).enabled


@pytest.mark.parametrize("protocol", ["ABY3", "SEMI2K"])
def test_session_put_uses_built_shares_and_reveals_the_values(protocol, monkeypatch):
    """A put of large leaves (in pieces, joined inside SPU) and small ones, floats and ints,
    goes through the builder and reveals what was put, bit for bit as SPU's own shares."""
    monkeypatch.setattr(spu_runner, "PUT_PIECE", 1000)
    s = get_session("spu", protocol, "FM64")
    calls = []
    original = ShareMaker.make

    def spy(self, x, vis):
        out = original(self, x, vis)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(ShareMaker, "make", spy)
    rng = np.random.default_rng(2)
    value = {
        "w": rng.standard_normal((37, 61)).astype(np.float32),  # 3 pieces
        "b": rng.standard_normal(5).astype(np.float32),
        "i": rng.integers(-1000, 1000, 2500).astype(np.int32),  # 3 pieces
    }
    h = s.put(value, owner="alice")
    got = s.reveal(h)
    s.free(h)
    monkeypatch.setattr(spu_runner, "BUILD_SHARES", False)
    h = s.put(value, owner="alice")
    ref = s.reveal(h)
    s.free(h)
    assert calls and all(calls)
    for k in value:
        assert np.array_equal(np.asarray(got[k]), np.asarray(ref[k])), k
        assert np.abs(np.asarray(got[k], np.float64) - value[k]).max() < 4e-6


@pytest.mark.parametrize("protocol", ["ABY3", "SEMI2K"])
def test_values_spu_saturates_or_zeroes_are_not_built(protocol):
    """Catches a builder that encodes inf, NaN or values beyond SPU's range itself (numpy's
    cast gives -2**63 where SPU saturates to +-2**62 or writes 0 for NaN: planted by dropping
    the range check, this test failed). ``put`` refuses such values before sharing; the
    builder leaves them to ``make_shares`` too, and the largest magnitude it accepts
    reconstructs to SPU's own encoding bit for bit."""
    s = get_session("spu", protocol, "FM64")
    maker = ShareMaker(s._io, protocol, "FM64", s._rc.fxp_fraction_bits)
    assert maker.enabled
    edge = float(maker._limit_below())
    for bad in (np.inf, -np.inf, np.nan, 2.0 * edge, 1e30):
        x = np.array([1.0, bad, -2.0], np.float32)
        assert maker.make(x, SECRET) is None, bad
    x = np.array([edge, -edge, 0.5], np.float32)
    ours = maker.make(x, SECRET)
    assert ours is not None
    got = np.asarray(s._io.reconstruct(ours))
    want = np.asarray(s._io.reconstruct(s._io.make_shares(x, SECRET, -1)))
    assert got.tobytes() == want.tobytes()
