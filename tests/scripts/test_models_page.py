"""docs/models.md is the page scripts/models_page.py writes: its models and its header."""

from __future__ import annotations

from scripts.models_page import PAGE, markdown, models, names_in_page


def test_page_lists_exactly_the_models():
    listed = names_in_page(PAGE.read_text())
    expected = [a.name for a in models()]
    assert listed == expected, (
        f"docs/models.md is stale: missing {sorted(set(expected) - set(listed))}, "
        f"extra {sorted(set(listed) - set(expected))}; regenerate it with "
        "`python scripts/models_page.py`"
    )


def test_page_header_is_the_scripts():
    """The paragraph naming the generator, the test and the tolerances: a page written by an
    older generator (another path) fails here."""
    header = markdown([]).splitlines()[:3]
    assert PAGE.read_text().splitlines()[:3] == header, "regenerate docs/models.md"


def test_model_names_are_unique():
    names = [a.name for a in models()]
    assert len(names) == len(set(names))
