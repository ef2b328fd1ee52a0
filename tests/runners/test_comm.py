"""Reading SPU's profiling log: bytes, sends and execution time per party and run."""

from __future__ import annotations

from ppml_torch.runners.comm import execution_seconds, link_totals, party_links

LOG = """\
2026-12-07 10:33:07.618 [info] [api.cc:printProfilingData:172] [Profiling] SPU execution f completed, input processing took 1.4e-06s, execution took 0.001495333s, output processing took 5.6e-07s, total time 0.0014s.
2026-12-07 10:33:07.618 [info] [api.cc:printProfilingData:223] - pphlo.dot, executed 1 times, duration 0.0006s, send bytes 480 recv bytes 96, send actions 3, recv actions 1
2026-12-07 10:33:07.618 [info] [api.cc:printProfilingData:233] Link details: total send bytes 1104, recv bytes 912, send actions 13, recv actions 13
2026-12-07 10:33:07.618 [info] [api.cc:printProfilingData:172] [Profiling] SPU execution f completed, input processing took 2e-06s, execution took 1.656e-03s, output processing took 1.2e-06s, total time 0.0016s.
2026-12-07 10:33:07.618 [info] [api.cc:printProfilingData:233] Link details: total send bytes 1008, recv bytes 1008, send actions 14, recv actions 13
"""  # noqa: E501


def test_per_party_lines():
    assert party_links(LOG) == [(1104, 13), (1008, 14)]
    assert execution_seconds(LOG) == [0.001495333, 0.001656]
    assert link_totals(LOG) == (2112, 27)
    assert party_links("") == [] and execution_seconds("") == []
