"""The op table: built from the registry, every lowering tested, refusals explained, CLI output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ppml_torch.converters.fx import registry, table

sys.path.insert(0, str(Path(__file__).parent / "ops"))

# Lowerings tested by a dedicated test instead of a Case row.
TESTED_ELSEWHERE = {
    "aten._assert_tensor_metadata.default": "ops/test_shapes.py::test_assert_tensor_metadata_is_a_no_op",
}


def _family_tests():
    """family -> its test module (tests/converters/fx/ops/test_<family>.py)."""
    import importlib

    return {f: importlib.import_module(f"test_{f}") for f in registry.FAMILIES}


def _all_cases():
    return [c for m in _family_tests().values() for c in m.CASES]


def test_every_registered_op_has_a_row_and_every_row_a_lowering_or_refusal():
    rows = {r.op: r for r in table.rows()}
    lowerings = registry.load()
    assert set(rows) == {e.name for e in lowerings.values()}
    for entry in lowerings.values():
        row = rows[entry.name]
        assert row.status in registry.STATUSES
        assert (entry.fn is None) == (row.status == "unsupported"), entry.name
        if row.status != "supported":
            assert row.note, f"{entry.name}: {row.status} needs a note saying why"


def test_every_lowered_op_has_a_test_case():
    tested = {c.id.split("-")[0] for c in _all_cases()} | set(TESTED_ELSEWHERE)
    lowered = {r.op for r in table.rows() if r.status != "unsupported"}
    untested = sorted(lowered - tested)
    assert not untested, f"lowerings without a test case in tests/converters/fx/ops/: {untested}"


def test_cases_are_in_the_file_of_their_family():
    for family, module in _family_tests().items():
        for c in module.CASES:
            assert registry.load()[c.op].family == family, c.id


def test_render_gives_text_and_json():
    text = table.render()
    assert "aten.scaled_dot_product_attention.default" in text and "approximate-under-MPC" in text
    data = json.loads(table.render(status="unsupported", fmt="json"))
    assert data and all(r["status"] == "unsupported" for r in data)
    assert {"aten.native_batch_norm.default", "aten.bernoulli.default"} <= {r["op"] for r in data}


def test_docs_page_is_up_to_date():
    page = Path(__file__).parents[3] / "docs" / "ops.md"
    expected = table.as_markdown(table.rows()) + "\n"
    if page.read_text() != expected:
        pytest.fail(
            "docs/ops.md is stale: regenerate with `ppml-torch ops --markdown > docs/ops.md`"
        )


def test_index_lowering_figures_are_kept_in_bench_readme_only():
    """The costs of index_lowering are measured figures: bench/README.md holds them; the op
    table and the docstrings describe the lowerings in words and point there."""
    import re

    from ppml_torch.converters.fx.ops import index_lowering

    figure = re.compile(r"\d[\d,.]*\s?(x\b|times\b|[KMG]B\b|s\b)")
    texts = {
        "op table (docs/ops.md)": table.as_markdown([]),
        "LoweringOptions": registry.LoweringOptions.__doc__,
        "ops/index_lowering.py": index_lowering.__doc__,
        "INPUT_INDEX_NOTE": index_lowering.INPUT_INDEX_NOTE,
    }
    for where, text in texts.items():
        assert not figure.search(text), f"{where} carries a figure: {figure.search(text)[0]!r}"
        assert "bench/README.md" in text or where == "INPUT_INDEX_NOTE", where
    bench = (Path(__file__).parents[3] / "bench" / "README.md").read_text()
    assert "## `bench_index_lowering.py`" in bench
