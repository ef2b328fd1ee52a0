"""The gpt2 table, written once for runs side by side and for one process per party."""

from __future__ import annotations

import types

import numpy as np

from ppml_torch.apps.gpt2 import report
from ppml_torch.runners.roles import roles


def generation(ids, *, share=0.5, steps=True):
    run = types.SimpleNamespace(run_s=1.25)
    return types.SimpleNamespace(
        ids=np.asarray(ids),
        compile_s=3.0,
        step_s=0.125 if steps else None,
        comm=None,
        weights_put=types.SimpleNamespace(run_s=share),
        prefill=run,
    )


def test_side_by_side_rows_line_up_under_the_header_and_compare_ids():
    """Catches the columns drifting from the header, and the agreement column comparing with
    the wrong row (the first row is the reference; ``no@k`` names the first differing token)."""
    t = report.Table(agree=True)
    assert t.header == (
        "run                      route  agree   share  prompt   token  compile  communication"
    )
    rows = [
        t.torch_row(np.array([[1, 2, 3]]), 0.5),
        t.row("spu:ABY3:FM64", "graph", generation([[1, 2, 3]])),
        t.row("spu:ABY3:FM64", "flax", generation([[1, 5, 3]], steps=False)),
    ]
    assert rows == [
        "torch                    -      ref         -       -  0.500s        -  -",
        "spu:ABY3:FM64            graph  yes     0.50s   1.25s  0.125s     3.0s  -",
        "spu:ABY3:FM64            flax   no@1    0.50s   1.25s       -     3.0s  -",
    ]
    for r in rows:  # every column ends where its header does
        assert len(r) == len(t.header) - len("communication") + 1


def test_one_party_rows_have_no_agreement_and_name_the_sender():
    t = report.Table(agree=False, sent_by="erin")
    assert t.header.endswith("compile  communication (sent by erin)")
    assert "agree" not in t.header
    row = t.row("secretflow:ABY3:FM64", "graph", generation([[1]]))
    assert row == "secretflow:ABY3:FM64     graph   0.50s   1.25s  0.125s     3.0s  -"
    assert len(row) == len(t.header) - len("communication (sent by erin)") + 1


def test_notes_name_the_roles():
    r = roles(("dave", "erin"))
    assert report.privacy_line(r).startswith("weights: dave's secret, shared once; prompt: erin's")
    assert report.table_note(r).startswith("share: dave's weights secret-shared (once)")
    assert "wall times in erin's process" in report.table_note(r, party="erin")
