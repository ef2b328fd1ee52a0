"""The patches of SecretFlow/SPU/Ray are checked against the code they were made from
(runners/secretflow/patches.py): a target that changed or is gone is refused in one line that
names the version to install; the installed versions pass."""

from __future__ import annotations

import json
import re

import pytest

from ppml_torch.errors import PpmlError
from ppml_torch.runners.secretflow import patches
from ppml_torch.runners.secretflow.patches import PatchError, Target, fingerprint


def _target(name: str, sha256: str | None, module: str = "json") -> Target:
    return Target("secretflow", patches.SECRETFLOW, module, name, sha256)


def test_a_target_as_written_passes():
    assert _target("dumps", fingerprint(json.dumps)).check() is json.dumps
    assert _target("JSONDecoder.decode", None).check() is json.JSONDecoder.decode


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (_target("dumps", "0" * 16), "dumps (json), whose code differs in"),
        (_target("no_such_function", None), "no_such_function (json), which"),
        (_target("JSONDecoder.no_such_method", None), "JSONDecoder.no_such_method (json)"),
        (_target("x", None, module="no_such_module_xyz"), "x (no_such_module_xyz), which"),
    ],
    ids=["changed", "gone", "gone method", "gone module"],
)
def test_a_changed_or_missing_target_is_refused_in_one_line(target, says):
    """Catches a patch applied to code other than the code it was copied from (the check
    skipped, or comparing something that does not change with the source)."""
    with pytest.raises(PatchError) as e:
        patches.check((target,))
    text = str(e.value)
    assert "\n" not in text and says in text, text
    assert f"secretflow {patches.SECRETFLOW}'s" in text, text
    assert f"install secretflow=={patches.SECRETFLOW} (requirements/lock.txt" in text, text
    assert "ppml_torch/runners/secretflow/patches.py" in text, text
    assert isinstance(e.value, PpmlError)  # the command line: one line, exit 2


def test_every_target_is_checked_in_its_session_list():
    """A target declared but left out of both lists would never be checked before start-up."""
    declared = {
        v
        for v in vars(patches).values()
        if isinstance(v, Target)
        or (isinstance(v, tuple) and v and all(isinstance(t, Target) for t in v))
    }
    flat = set()
    for v in declared:
        flat.update(v if isinstance(v, tuple) else (v,))
    assert flat <= set(patches.PRODUCTION) | set(patches.SIMULATION)


def test_slow_retries_set_the_link_retry_options():
    """A failing send is retried once a second for three times the bound (30 s: 91 tries)."""
    import spu.libspu.link as link

    desc = link.Desc()
    patches.slow_retries(desc, 30_000)
    r = desc.retry_opts
    assert (r.max_retry, r.retry_interval_ms, r.retry_interval_incr_ms) == (91, 1000, 0)
    assert r.max_retry_interval_ms == 1000


@pytest.mark.secretflow
def test_the_installed_secretflow_spu_and_ray_are_the_patched_versions():
    """Fails when secretflow/spu/ray are upgraded without the patches being reviewed."""
    pytest.importorskip("secretflow")
    patches.check(patches.PRODUCTION)
    patches.check(patches.SIMULATION)


@pytest.mark.secretflow
def test_proxy_patches_are_undone_after_use_and_refused_when_the_target_changed(monkeypatch):
    pytest.importorskip("secretflow")
    from secretflow.distributed.fed.proxy.brpc_link.brpc_link import BrpcLinkProxy

    start, stop = BrpcLinkProxy.start, BrpcLinkProxy.stop
    with patches.cross_silo_link(1000, tls=True), patches.links_stopped_then_linger():
        assert BrpcLinkProxy.start is not start and BrpcLinkProxy.stop is not stop
    assert BrpcLinkProxy.start is start and BrpcLinkProxy.stop is stop

    def stop_changed(proxy):  # what a new secretflow's stop might be
        proxy._linker = None

    monkeypatch.setattr(BrpcLinkProxy, "stop", stop_changed)
    with pytest.raises(PatchError, match=re.escape("BrpcLinkProxy.stop (secretflow.distributed")):
        with patches.links_stopped_then_linger():
            raise AssertionError("the patch was applied to a changed target")
    assert BrpcLinkProxy.stop is stop_changed  # left as it was
