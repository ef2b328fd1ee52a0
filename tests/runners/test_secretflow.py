"""SecretFlow sessions that fail while starting leave no Ray cluster behind."""

from __future__ import annotations

import pytest

from tests import sessions


@pytest.mark.secretflow
def test_failure_after_sf_init_shuts_ray_down(monkeypatch):
    pytest.importorskip("secretflow")
    import ray

    from ppml_torch.runners import open_session, secretflow

    sessions.close_backend("secretflow")  # one SecretFlow runtime per process
    seen = {}

    def fail_after_init(*a, **k):
        seen["ray_was_up"] = ray.is_initialized()
        raise RuntimeError("device set-up failed")

    monkeypatch.setattr(secretflow, "spu_runtime_config_dict", fail_after_init)
    with pytest.raises(RuntimeError, match="device set-up failed"):
        open_session("secretflow", "SEMI2K", "FM64")
    assert seen == {"ray_was_up": True}, "the failure must come after sf.init for this test"
    assert not ray.is_initialized()
    assert secretflow.SecretFlowSession._active is None
