"""The pytest plugin as a user meets it: a fresh test file, one line per model."""

from __future__ import annotations

from pathlib import Path

import pytest

PLUGIN = ("-p", "ppml_torch.equivalence.plugin", "-p", "no:cacheprovider")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # In a subprocess (torch cannot be imported twice in one process, which pytester's in-process
    # runs would do), importing this checkout's ppml_torch (the entry point is not needed).
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return pytester


USER_TESTS = """
import torch


def test_my_model(ppml_equivalence):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    ppml_equivalence(model.eval(), torch.rand(5, 6), grads=True)


def test_out_of_fixed_point_range(ppml_equivalence):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.5e4, 1e4)
    ppml_equivalence(model, torch.rand(5, 6))
"""


def test_one_line_tests_run_per_run_and_name_the_failing_element(pytester: pytest.Pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(*PLUGIN, "--ppml-runs", "cpu,spu:SEMI2K", "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_my_model?cpu? PASSED*",
            "*test_my_model?spu:SEMI2K:FM64? PASSED*",
            "*test_out_of_fixed_point_range?cpu? PASSED*",
            "*test_out_of_fixed_point_range?spu:SEMI2K:FM64? FAILED*",
            "*not equivalent on spu:SEMI2K:FM64:*",
            "*graph*spu:SEMI2K:FM64*FAIL*output?*, *?: expected *, got * (* elements out of tolerance)",
            "*largest output error vs torch eager*",
        ]
    )


def test_bad_runs_are_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(*PLUGIN, "--ppml-runs", "cpu,spu:NOPE")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ppml-runs 'cpu,spu:NOPE': *unknown protocol 'NOPE'*"])


def test_marker_narrows_the_runs(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_user="""
import pytest, torch

@pytest.mark.ppml_runs("cpu")
def test_cpu_only(ppml_equivalence, ppml_run):
    assert str(ppml_run) == "cpu"
    ppml_equivalence(torch.nn.Linear(3, 2).eval(), torch.rand(2, 3))
"""
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "--ppml-runs", "cpu,spu:ABY3", "-v")
    result.assert_outcomes(passed=1)
