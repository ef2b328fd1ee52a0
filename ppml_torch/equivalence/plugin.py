"""pytest plugin: one-line equivalence tests for your own torch models.

Installed with ppml-torch (entry point ``pytest11``); without the installed entry point, load
it with ``pytest -p ppml_torch.equivalence.plugin``.  In a test::

    def test_my_model(ppml_equivalence):
        ppml_equivalence(MyNet().eval(), torch.rand(4, 30))            # add grads=True, ...

runs once per run of ``--ppml-runs`` (default ``cpu,spu:SEMI2K,spu:ABY3``; the test ids name
the run) and fails with the report's table when a row fails: which output (pytree path),
which element, expected and got.  Keyword arguments are those of
:func:`ppml_torch.check_equivalence` (``grads``, ``tolerance``, ``routes``, ...).  The
``ppml_run`` fixture is the run of the current test (a :class:`~ppml_torch.runners.runspec.RunSpec`),
``ppml_session`` its shared session (``None`` for ``torch``).  Sessions are shared by the
whole test run (SPU starts once per protocol) and closed at its end.
"""

from __future__ import annotations

from typing import Any

import pytest

DEFAULT_RUNS = "cpu,spu:SEMI2K,spu:ABY3"
_LARGEST = pytest.StashKey[dict]()  # (route, run) -> largest output error, per pytest run


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ppml-torch", "ppml-torch equivalence checks")
    group.addoption(
        "--ppml-runs",
        default=None,
        metavar="RUNS",
        help=f"runs of ppml_equivalence tests, comma separated (default {DEFAULT_RUNS}; "
        "e.g. cpu,spu:ABY3:FM128)",
    )
    parser.addini("ppml_runs", "default of --ppml-runs", default=DEFAULT_RUNS)


def _runs(config: pytest.Config) -> list[Any]:
    from ppml_torch.errors import PpmlError
    from ppml_torch.runners.runspec import parse_runs

    text = config.getoption("--ppml-runs") or config.getini("ppml_runs") or DEFAULT_RUNS
    try:
        return parse_runs(text.replace(",", " ").split())
    except PpmlError as e:
        raise pytest.UsageError(f"--ppml-runs {text!r}: {e}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ppml_runs(*runs): run this test's ppml_equivalence only on these runs"
    )
    config._ppml_runs = _runs(config)  # type: ignore[attr-defined]  # checked before collection
    config.stash[_LARGEST] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ppml_run" not in metafunc.fixturenames:
        return
    runs = metafunc.config._ppml_runs  # type: ignore[attr-defined]
    marker = metafunc.definition.get_closest_marker("ppml_runs")
    if marker is not None:
        from ppml_torch.runners.runspec import parse_runs

        wanted = set(parse_runs(marker.args))
        runs = [r for r in runs if r in wanted]
    if not runs:
        metafunc.parametrize("ppml_run", [pytest.param(None, marks=pytest.mark.skip(
            reason="none of this test's ppml_runs is among --ppml-runs"))])  # fmt: skip
        return
    metafunc.parametrize("ppml_run", runs, ids=[str(r) for r in runs])


@pytest.fixture
def ppml_run(request: pytest.FixtureRequest) -> Any:
    """The run of this test (parametrized over ``--ppml-runs``)."""
    return request.param


@pytest.fixture
def ppml_session(ppml_run: Any) -> Any:
    """The shared session of this test's run (``None`` for ``torch``)."""
    from .sessions import session_for

    return None if ppml_run.is_torch else session_for(ppml_run)


@pytest.fixture
def ppml_equivalence(ppml_run: Any, request: pytest.FixtureRequest):
    """``check(module, example_inputs, **kwargs)``: assert the module is equivalent on this
    test's run; returns the :class:`~ppml_torch.equivalence.EquivalenceReport`."""
    from .check import check_equivalence
    from .sessions import session_for

    def check(module: Any, example_inputs: Any, **kwargs: Any) -> Any:
        if "runs" in kwargs or "sessions" in kwargs:
            raise TypeError("ppml_equivalence: runs come from --ppml-runs; sessions are shared")
        report = check_equivalence(
            module, example_inputs, runs=[str(ppml_run)], sessions=session_for, **kwargs
        )
        largest = request.config.stash[_LARGEST]
        for row in report.rows:
            if row.out_err is not None:
                key = (row.route, row.run)
                largest[key] = max(largest.get(key, 0.0), row.out_err)
        if not report.passed:
            pytest.fail(f"not equivalent on {ppml_run}:\n{report}", pytrace=False)
        return report

    return check


def pytest_unconfigure(config: pytest.Config) -> None:
    from .sessions import close_all

    close_all()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    largest = config.stash.get(_LARGEST, {})
    if largest:
        terminalreporter.write_sep("-", "ppml_equivalence: largest output error vs torch eager")
        for (route, run), err in sorted(largest.items()):
            terminalreporter.write_line(f"{route:<6} {run:<18} {err:.2e}")
