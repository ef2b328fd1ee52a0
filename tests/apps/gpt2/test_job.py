"""The gpt2 app's model choice: models/tiny-gpt2 when built and nothing else is asked for."""

from __future__ import annotations

import pytest

from ppml_torch.apps.gpt2 import job
from ppml_torch.generation import GenerationError


@pytest.fixture
def built(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(job, "TRAINED", tmp_path)
    return tmp_path


def test_the_trained_model_is_the_default_once_built(built):
    assert job.ModelSpec().resolved().checkpoint == str(built)


@pytest.mark.parametrize(
    "spec", [job.ModelSpec(layers=1), job.ModelSpec(init_std=0.1), job.ModelSpec(checkpoint="d")]
)
def test_a_shape_or_a_checkpoint_keeps_the_trained_model_out(built, spec):
    """Catches the default taking over a random model's shape or the user's checkpoint."""
    assert spec.resolved() == spec


def test_a_checkpoint_and_a_shape_are_refused_together(built):
    with pytest.raises(GenerationError, match=r"--width, --init-std set the random model's shape"):
        job.ModelSpec(checkpoint="d", width=32, init_std=0.1).resolved()


def test_without_the_trained_model_the_random_one_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "TRAINED", tmp_path / "absent")
    assert job.ModelSpec().resolved().checkpoint is None
