"""The homework table: one row per run, |dAUC| against the first cpu row."""

from __future__ import annotations

from ppml_torch.apps.homework import report, train
from ppml_torch.apps.homework.data import load_data
from ppml_torch.apps.homework.evaluate import torch_auc
from ppml_torch.runners import RunReport
from ppml_torch.runners.runspec import parse_runs


def test_run_homework_gives_one_row_per_run():
    seen = []
    rows = report.run_homework(parse_runs(["cpu"]), epochs=2, on_row=seen.append)
    assert rows == seen and len(rows) == 1
    row = rows[0]
    assert (row.backend, row.protocol, row.field) == ("cpu", "-", "-")
    assert row.report.comm is None
    # the AUC of torch eager after 2 epochs from the same initial weights, same batches
    data = load_data()
    eager, _ = train.torch_eager(train.torch_mlp(), data, epochs=2)
    assert abs(row.auc - torch_auc(eager, data)) < 1e-6
    assert abs(row.auc - torch_auc(train.torch_mlp(), data)) > 1e-3  # it did train


def test_table_measures_dauc_from_the_first_cpu_row():
    rep = RunReport("spu", "train", 1.0, 2.0)
    table = report.Table()
    first = table.line(report.HomeworkRow("spu", "ABY3", "FM64", 0.95, rep))
    assert first.split()[4] == "-"  # no cpu row yet
    table.line(report.HomeworkRow("cpu", "-", "-", 0.99, RunReport("cpu", "train", 0.5, 1.0)))
    line = table.line(report.HomeworkRow("spu", "SEMI2K", "FM64", 0.98, rep))
    assert line.split()[3:7] == ["0.9800", "0.0100", "1.0s", "2.0s"]
