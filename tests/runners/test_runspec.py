"""The one run-spec syntax: backend[:protocol[:field]] plus torch."""

from __future__ import annotations

import pytest

from ppml_torch.runners import ConfigError
from ppml_torch.runners.runspec import RunSpec, parse_run, parse_runs


def test_specs_parse_with_defaults():
    assert parse_runs(["torch", "cpu", "spu:ABY3", "spu:SEMI2K:FM128"], "FM64") == [
        RunSpec("torch"),
        RunSpec("cpu"),
        RunSpec("spu", "ABY3", "FM64"),
        RunSpec("spu", "SEMI2K", "FM128"),
    ]
    assert parse_run("spu") == RunSpec("spu", "SEMI2K", "FM64")
    assert str(parse_run("spu:aby3", "FM128")) == "spu:ABY3:FM128"


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["spu:ABY4"], "unknown protocol 'ABY4'"),
        (["gpu"], "unknown backend 'gpu'"),
        (["cpu:SEMI2K"], "cpu is plaintext and takes no protocol"),
        (["spu:ABY3:FM32"], "unknown field 'FM32'"),
        (["spu:ABY3:FM64:x"], "has 4 parts"),
        (["spu:ABY3", "spu:ABY3:FM64"], "listed twice"),
        ([], "no runs given"),
        ([""], "is empty"),
    ],
)
def test_bad_specs_fail_in_one_line(specs, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_runs(specs, "FM64")
    assert "\n" not in str(e.value)


def test_torch_refused_where_there_is_no_torch_run():
    with pytest.raises(ConfigError, match="no torch eager run"):
        parse_runs(["torch"], allow_torch=False)
