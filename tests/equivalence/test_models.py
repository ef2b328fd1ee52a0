"""docs/models.md lists exactly the models of the compatibility script."""

from __future__ import annotations

from ppml_torch.equivalence.models import PAGE, models, names_in_page


def test_page_lists_exactly_the_models():
    listed = names_in_page(PAGE.read_text())
    expected = [a.name for a in models()]
    assert listed == expected, (
        f"docs/models.md is stale: missing {sorted(set(expected) - set(listed))}, "
        f"extra {sorted(set(listed) - set(expected))}; regenerate it with "
        "`python -m ppml_torch.equivalence.models`"
    )


def test_model_names_are_unique():
    names = [a.name for a in models()]
    assert len(names) == len(set(names))
