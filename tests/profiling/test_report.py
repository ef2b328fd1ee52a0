"""The profile's rows, tables and chart, on a report built by hand (no MPC run)."""

from __future__ import annotations

import pytest

from ppml_torch.errors import InputFileError
from ppml_torch.profiling.report import Cost, Measured, PartCost, ProfileError, ProfileReport


def part(row, path, kind, nbytes, seconds, backward=False, module_kind=""):
    return PartCost(row, path, module_kind, kind, backward, Cost(nbytes, nbytes // 100, seconds),
                    seconds, (nbytes // 2,) * 2, (nbytes // 200,) * 2, 3)  # fmt: skip


PARTS = [
    part("h.0.attn", "h.0.attn", "matmul", 4000, 0.2, module_kind="Attention"),
    part("h.0.attn.proj", "h.0.attn.proj", "matmul", 1000, 0.1, module_kind="Linear"),
    part("h.0", "h.0", "other", 0, 0.05, module_kind="Block"),
    part("h.0.attn.proj", "h.0.attn.proj", "matmul", 3000, 0.3, backward=True,
         module_kind="Linear"),
    part("(loss)", None, "other", 200, 0.05),
]  # fmt: skip
TOTAL = Cost(8200, 82, 0.7)
REPORT = ProfileReport("toy", "spu:ABY3:FM64", "graph", True, ("alice", "bob", "carol"),
                       Measured(TOTAL, 0.3, (4100, 4100), (41, 41)), tuple(PARTS), 1.0, 1.0,
                       {"": "Net", "h": "ModuleList", "h.0": "Block"})  # fmt: skip


def test_rows_nest_and_own_figures_add_up_to_the_totals():
    rows = {r.path: r for r in REPORT.rows}
    assert list(rows) == ["", "h", "h.0", "h.0.attn", "h.0.attn.proj", "(loss)"]
    assert rows[""].bytes == 8000 and rows[""].kind == "Net"
    assert rows["h.0.attn"].bytes == 8000 and rows["h.0.attn"].own.bytes == 4000
    assert rows["h.0.attn.proj"].forward.bytes == 1000
    assert rows["h.0.attn.proj"].backward.bytes == 3000
    assert rows["h"].own == Cost() and rows["h"].has_children
    assert sum(r.own.bytes for r in REPORT.rows) == REPORT.total_bytes
    assert sum(r.own.seconds for r in REPORT.rows) == pytest.approx(REPORT.total_seconds)
    assert rows["h.0.attn.proj"].share == pytest.approx(0.4 / 0.7)


def test_leaves_costliest_first():
    # by time, then bytes
    assert [r.path for r in REPORT.leaves] == ["h.0.attn.proj", "h.0.attn", "(loss)", "h.0"]
    assert REPORT.leaves[1].label == "h.0.attn (own work)"


def test_kinds():
    kinds = REPORT.kinds()
    assert list(kinds) == ["matmul", "other"]
    fwd, bwd = kinds["matmul"]
    assert (fwd.bytes, bwd.bytes) == (5000, 3000)


def test_describe_shows_forward_and_backward_and_estimates():
    text = REPORT.describe()
    assert "sent fwd" in text and "time bwd" in text
    assert text.index("h.0.attn.proj") < text.index("h.0.attn (own work)")
    assert "wan (100 Mbit/s, 40 ms round trip)" in text
    under = REPORT.describe(under="h.0.attn")
    table = under.split("kind of work")[0]
    assert "module h.0.attn (Attention): 7.81 KiB sent in 80 sends, 0.6000 s" in table
    assert "h.0.attn.proj" in table and "(loss)" not in table and "h.0 (own" not in table


def test_an_unknown_module_path_is_a_one_line_error():
    with pytest.raises(ProfileError) as e:
        REPORT.row("h.0.atn")
    assert str(e.value).startswith("no module 'h.0.atn' in this profile of toy; near: ")
    assert "\n" not in str(e.value)
    with pytest.raises(ProfileError):
        REPORT.describe(under="nope")


def test_plot_writes_a_png(tmp_path):
    out = REPORT.plot(tmp_path / "profile.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ProfileError, match="does not end in .png"):
        REPORT.plot(tmp_path / "profile.jpg")
    with pytest.raises(InputFileError, match="does not exist"):
        REPORT.plot(tmp_path / "missing" / "profile.png")
