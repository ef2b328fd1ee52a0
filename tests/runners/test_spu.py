"""Running an exported program (.mlir + manifest + weights) in an SPU session."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ppml_torch.errors import InputFileError
from ppml_torch.runners import ConfigError
from ppml_torch.runners.spu import run_exported
from ppml_torch.stablehlo import describe_leaves, to_stablehlo, write_export
from ppml_torch.testing import assert_close
from tests.sessions import get_session

W = {"fc.bias": np.array([0.5, -1.0], np.float32), "fc.weight": np.eye(2, 3, dtype=np.float32)}


def fc(p, x):
    return x @ p["fc.weight"].T + p["fc.bias"]


@pytest.fixture
def exported(tmp_path):
    x = jax.ShapeDtypeStruct((4, 3), np.float32)
    inputs = describe_leaves(W, "params") + describe_leaves((x,), "args")
    outputs = describe_leaves(jax.eval_shape(fc, W, x), "out")
    mlir, _, _ = write_export(tmp_path, "fc", to_stablehlo(fc, W, x), W, inputs, outputs, "fc")
    return mlir


@pytest.mark.parametrize("weights_owner", ["alice", "public"])
def test_exported_program_runs_with_owners(exported, weights_owner):
    s = get_session("spu", "SEMI2K", "FM64")
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    got = run_exported(s, exported, {"args[0]": x}, weights_owner=weights_owner, inputs_owner="bob")
    assert set(got) == {"out"}
    assert_close(got["out"], fc(W, x), protocol="SEMI2K", field="FM64", what="exported fc")
    r = s.last_report
    assert r.what == "fc" and r.compile_s > 0 and r.comm.send_bytes > 0


def test_bad_inputs_are_refused_before_sharing(exported):
    s = get_session("spu", "SEMI2K", "FM64")
    x = np.ones((4, 3), np.float32)
    n_reports = len(s.reports)
    kw = {"weights_owner": "alice", "inputs_owner": "bob"}
    with pytest.raises(ConfigError, match=r"no value for input args\[0\]"):
        run_exported(s, exported, {}, **kw)
    with pytest.raises(ConfigError, match=r"input args\[0\] is float32\[2, 3\]"):
        run_exported(s, exported, {"args[0]": x[:2]}, **kw)
    with pytest.raises(ConfigError, match=r"are not inputs of fc.mlir"):
        run_exported(s, exported, {"args[0]": x, "x": x}, **kw)
    with pytest.raises(ConfigError, match="owner 'dave'"):
        run_exported(s, exported, {"args[0]": x}, weights_owner="dave", inputs_owner="bob")
    with pytest.raises(ConfigError, match="needs an 'spu' session"):
        run_exported(get_session("cpu"), exported, {"args[0]": x}, **kw)
    exported.write_text(exported.read_text().replace("stablehlo.add", "stablehlo.bogus"))
    with pytest.raises(InputFileError, match="SPU cannot compile it") as e:
        run_exported(s, exported, {"args[0]": x}, **kw)
    assert "\n" not in str(e.value)
    assert len(s.reports) == n_reports, "nothing may be put before the checks pass"


@pytest.mark.parametrize("owner", ["alice", "public"])
def test_a_leaf_put_in_pieces_is_the_same_value(monkeypatch, owner):
    """A leaf above ``PUT_PIECE`` elements is shared in pieces joined inside SPU: the joined
    value, its visibility and what a program computes on it equal a leaf put whole."""
    import ppml_torch.runners.spu as spu_runner

    rng = np.random.default_rng(3)
    big = rng.normal(size=(5, 6)).astype(np.float32)  # 30 elements: pieces of 7, last of 2
    small = rng.normal(size=(6,)).astype(np.float32)
    s = get_session("spu", "SEMI2K", "FM64")
    whole = s.put({"w": big, "v": small}, owner=owner)
    monkeypatch.setattr(spu_runner, "PUT_PIECE", 7)
    pieces = s.put({"w": big, "v": small}, owner=owner)
    try:
        assert s._vis[pieces.key] == s._vis[whole.key]

        def f(p):
            return p["w"] @ p["v"]

        got = s.reveal(s.call(f, pieces))
        want = s.reveal(s.call(f, whole))
        assert_close(got, want, protocol="SEMI2K", field="FM64")  # truncation's randomness: ~1 ulp
        assert_close(got, big @ small, protocol="SEMI2K", field="FM64")
        back = s.reveal(pieces)  # the encoded values themselves are bit-identical
        np.testing.assert_array_equal(back["w"], s.reveal(whole)["w"])
        np.testing.assert_array_equal(back["v"], s.reveal(whole)["v"])
    finally:
        s.free(whole)
        s.free(pieces)


def test_put_shares_the_largest_leaves_first_and_each_keeps_its_value(monkeypatch):
    """Leaves are shared largest first (a leaf put in pieces exists twice while it is joined:
    best before the rest is held); catches a reordering that mixes up which share is which
    leaf (planted: each name paired with another leaf's array: the put or the reveal failed) and
    a put that goes back to leaf order."""
    import ppml_torch.runners.spu as spu_runner

    monkeypatch.setattr(spu_runner, "PUT_PIECE", 16)
    rng = np.random.default_rng(4)
    value = {
        "a": rng.normal(size=(3,)).astype(np.float32),
        "b": rng.normal(size=(40,)).astype(np.float32),  # in pieces
        "c": rng.normal(size=(2, 5)).astype(np.float32),
        "d": rng.normal(size=(4, 6)).astype(np.float32),  # in pieces
    }
    s = get_session("spu", "SEMI2K", "FM64")
    sizes = []
    original_share, original_pieces = (
        spu_runner.SpuSession._share,
        spu_runner.SpuSession._share_in_pieces,
    )

    def share(self, name, arr, vis, owner_rank):
        if ".p" not in name:
            sizes.append(arr.size)
        return original_share(self, name, arr, vis, owner_rank)

    def in_pieces(self, name, arr, vis, owner_rank):
        sizes.append(arr.size)
        return original_pieces(self, name, arr, vis, owner_rank)

    monkeypatch.setattr(spu_runner.SpuSession, "_share", share)
    monkeypatch.setattr(spu_runner.SpuSession, "_share_in_pieces", in_pieces)
    h = s.put(value, owner="alice")
    try:
        assert sizes == [40, 24, 10, 3]
        back = s.reveal(h)
        for k, v in value.items():
            assert_close(back[k], v, protocol="SEMI2K", field="FM64")
    finally:
        s.free(h)
