# The two commands a newcomer needs: `make demo` and `make test`.  Both set up .venv first.
PY := .venv/bin/python
RUFF_PATHS := ppml_torch tests converters bench examples

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m ppml_torch homework-mlp

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff format --check $(RUFF_PATHS)
	$(PY) -m ruff check $(RUFF_PATHS)

clean:
	rm -rf .venv
