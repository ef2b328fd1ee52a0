"""The vision rows of docs/models.md (scripts/vision_models.py), checked as the page checks
them (scripts/models_page.py): every one matches torch in plaintext, outputs and gradients;
the sample ones also under spu:ABY3 within the derived tolerance (at least four, as issue 20
asks)."""

from __future__ import annotations

import pytest

from scripts.models_page import Arch, check_one
from scripts.vision_models import VISION
from tests.sessions import record_error

# MobileNetV2 and EfficientNet have their architectures' fixed depth (17 and 16 blocks even
# at the smallest width): minutes to export and compile on a loaded 2-core machine
_SLOW = {"MobileNetV2", "EfficientNet"}


def _param(entry):
    marks = [pytest.mark.slow] if entry[0] in _SLOW else []
    return pytest.param(entry, id=entry[0], marks=marks)


@pytest.mark.parametrize("entry", [_param(e) for e in VISION])
def test_vision_model_matches_torch_in_plaintext(entry):
    res = check_one(Arch(*entry[:3]), mpc=False)
    print(f"{entry[0]}: out err {res.plain_err:.1e}, grad err {res.grad_err:.1e}, flax {res.flax}")
    assert res.status == "matches torch", f"{entry[0]}: {res.status}"


SAMPLES = [e for e in VISION if e[3]]


def test_at_least_four_vision_models_are_checked_under_aby3():
    assert len(SAMPLES) >= 4


@pytest.mark.parametrize("entry", SAMPLES, ids=[e[0] for e in SAMPLES])
def test_vision_model_under_aby3(entry):
    res = check_one(Arch(*entry[:3], sample=True), mpc=True)
    assert res.aby3_ok is not None, f"{entry[0]} did not pass in plaintext: {res.status}"
    print(f"{entry[0]} ABY3: out err {res.aby3_err:.1e} (tol {res.aby3_tol:.1e}), "
          f"{res.aby3_bytes / 2**20:.1f} MiB")  # fmt: skip
    record_error(f"ABY3/FM64 vision {entry[0]}", res.aby3_err)
    assert res.aby3_ok, f"{entry[0]}: out err {res.aby3_err:.1e} over tol {res.aby3_tol:.1e}"
