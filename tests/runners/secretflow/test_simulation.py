"""SecretFlow in simulation mode on Ray (runners/secretflow/simulation.py): a session that fails
while starting leaves no Ray cluster behind; models travel to the workers as programs only."""

from __future__ import annotations

import pytest

from tests import sessions


@pytest.mark.secretflow
def test_failure_after_sf_init_shuts_ray_down(monkeypatch):
    pytest.importorskip("secretflow")
    import ray

    from ppml_torch.runners import open_session
    from ppml_torch.runners.secretflow import devices, simulation

    sessions.close_backend("secretflow")  # one SecretFlow runtime per process
    seen = {}

    def fail_after_init(*a, **k):
        seen["ray_was_up"] = ray.is_initialized()
        raise RuntimeError("device set-up failed")

    monkeypatch.setattr(devices, "spu_runtime_config_dict", fail_after_init)
    with pytest.raises(RuntimeError, match="device set-up failed"):
        open_session("secretflow", "SEMI2K", "FM64")
    assert seen == {"ray_was_up": True}, "the failure must come after sf.init for this test"
    assert not ray.is_initialized()
    assert simulation.SecretFlowSession._active is None
    from ray import cloudpickle

    from ppml_torch.model import ConvertedModel

    assert ConvertedModel not in cloudpickle.CloudPickler.dispatch  # Ray's pickling restored


@pytest.mark.secretflow
def test_converted_model_is_shipped_as_its_program_only():
    """``s.call(cm.apply, ...)`` compiles in SecretFlow's workers: the model travels without its
    weights (bob's, put as a secret) and without torch's ExportedProgram (which torch cannot
    unpickle; this failed ``fit``'s graph route)."""
    pytest.importorskip("secretflow")
    import numpy as np
    import torch
    from ray import cloudpickle

    from ppml_torch.converters.fx import convert
    from ppml_torch.model import ConvertedModel
    from ppml_torch.testing import assert_close

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    with torch.no_grad():
        module[0].weight.fill_(0.1234567)  # a marker to look for in the pickled program
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3)).astype(np.float32)
    cm = convert(module, (torch.zeros(4, 3),))
    s = sessions.get_session("secretflow", "SEMI2K", "FM64")
    assert ConvertedModel in cloudpickle.CloudPickler.dispatch  # while a session is open
    assert np.float32(0.1234567).tobytes() not in cloudpickle.dumps(cm.apply)
    w, xh = s.put(cm.params, owner="bob"), s.put(x, owner="alice")
    out = s.reveal(s.call(cm.apply, w, xh))
    want = module(torch.as_tensor(x)).detach().numpy()
    sessions.record_error("secretflow SEMI2K/FM64", assert_close(out, want, protocol="SEMI2K"))
