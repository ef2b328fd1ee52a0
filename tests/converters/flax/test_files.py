"""ppml_torch/converters/flax/files.py: params files with their spec, torch checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax_cases import assert_state_dicts_equal, homework_mlp

from ppml_torch.converters.flax import files, to_flax
from ppml_torch.errors import InputFileError


@pytest.mark.parametrize("fmt", ["safetensors", "msgpack"])
def test_save_and_load_flax_keep_arrays_and_spec(tmp_path, fmt):
    cm = to_flax(homework_mlp())
    files.save_flax(tmp_path / f"p.{fmt}", cm.params, cm.extras["spec"])
    variables, spec = files.load_flax(tmp_path / f"p.{fmt}")
    assert spec == cm.extras["spec"]
    for (path, a), (_, b) in zip(
        sorted(files.flatten(variables).items()),
        sorted(files.flatten(cm.params).items()),
        strict=True,
    ):
        np.testing.assert_array_equal(a, np.asarray(b), err_msg="/".join(path))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_torch_state_dict_round_trip(tmp_path, suffix):
    sd = homework_mlp().state_dict()
    files.save_torch_state_dict(tmp_path / f"m{suffix}", sd)
    assert_state_dicts_equal(files.load_torch_state_dict(tmp_path / f"m{suffix}"), sd)


def test_bad_suffix_and_foreign_file(tmp_path):
    with pytest.raises(InputFileError, match=r"use one of \.safetensors, \.msgpack"):
        files.save_flax(tmp_path / "x.npz", {"params": {}}, {})
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputFileError, match="no ppml_torch.spec metadata"):
        files.load_flax(tmp_path / "other.safetensors")


def test_weights_only_load_runs_no_pickled_code(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputFileError, match="weights_only=True"):
        files.load_torch_state_dict(tmp_path / "evil.pt")
    assert "pickled code ran" not in capsys.readouterr().out


def test_check_output_file_refuses_its_input(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputFileError, match="is also an input"):
        files.check_output_file(
            tmp_path / "sub" / ".." / "a.pt", "--out", inputs=(tmp_path / "a.pt",)
        )
    assert files.check_output_file(tmp_path / "b.pt", "--out", inputs=(tmp_path / "a.pt",))


def test_unwritable_output_is_refused(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: permissions cannot be tested as root")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(InputFileError, match="not writable"):
        files.check_output_file(ro / "o.pt", "--out")


@pytest.mark.parametrize("suffix", [".msgpack", ".safetensors", ".pt"])
def test_a_failed_write_is_one_line(tmp_path, suffix):
    """/proc takes no new files, even from root: every writer's failure is one line (torch.save
    raises a RuntimeError there, which was a 25-line traceback)."""
    cm = to_flax(homework_mlp())
    with pytest.raises(InputFileError, match="cannot be written") as e:
        if suffix == ".pt":
            files.save_torch_state_dict(
                f"/proc/ppml_torch_test{suffix}", homework_mlp().state_dict()
            )
        else:
            files.save_flax(f"/proc/ppml_torch_test{suffix}", cm.params, cm.extras["spec"])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fmt", ["safetensors", "msgpack"])
def test_a_spec_that_claims_a_huge_model_is_refused_before_building_it(tmp_path, fmt, monkeypatch):
    """A small params file whose spec claims widths 4, 30000, 30000, 1 (900M weights, 3.4 GiB)
    is refused in one line without allocating the model: it is built on torch's meta device
    only (shapes, no memory) and its bytes compared with the file's arrays.  Catches building
    the spec's model for real before the check (measured before the fix: 3.8 GB, then the
    refusal)."""
    import dataclasses

    from ppml_torch.converters.flax import registry
    from ppml_torch.converters.flax.jobs import flax_file_to_torch

    cm = to_flax(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)))
    spec = dict(cm.extras["spec"], widths=[4, 30000, 30000, 1])
    path = tmp_path / f"lie.{fmt}"
    files.save_flax(path, cm.params, spec)
    assert path.stat().st_size < 2000
    family = registry.get("mlp")
    devices = []

    def spy(spec):
        devices.append(str(torch.get_default_device()))
        return real_build(spec)

    real_build = family.build
    monkeypatch.setattr(registry, "get", lambda name: dataclasses.replace(family, build=spy))
    with pytest.raises(
        InputFileError, match=r"mlp spec describes a model of 343\d\.\d MiB but its file holds"
    ) as e:
        flax_file_to_torch(path, out=tmp_path / "out.pt")
    assert "\n" not in str(e.value)
    assert devices == ["meta"], devices  # never built with real memory
    assert not (tmp_path / "out.pt").exists()
    # the honest file of the same family still loads, built for real once
    files.save_flax(tmp_path / "ok.msgpack", cm.params, cm.extras["spec"])
    flax_file_to_torch(tmp_path / "ok.msgpack", out=tmp_path / "ok.pt")
    assert devices[1:] == ["meta", "cpu"]
