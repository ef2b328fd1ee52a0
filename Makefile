# The two commands a newcomer needs: `make demo` and `make test`.  Both set up .venv first.
PY := .venv/bin/python
RUFF_PATHS := ppml_torch tests converters bench examples scripts

.PHONY: setup demo test lint bench clean tiny-gpt2

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m ppml_torch homework-mlp

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff format --check $(RUFF_PATHS)
	$(PY) -m ruff check $(RUFF_PATHS)

# A small GPT-2 (2 layers, 128 wide, GPT-2's tokenizer and full 50,257 vocabulary) trained on
# pydoc_data.topics (seeded: TINY_STEPS steps give the same weights; TINY_MINUTES is a safety cap
# that stops earlier on a slow machine); `ppml-torch gpt2` uses models/tiny-gpt2 when present.
TINY_STEPS ?= 1500
TINY_MINUTES ?= 15
tiny-gpt2: setup
	nice $(PY) examples/train_tiny_gpt2.py --out models/tiny-gpt2 --steps $(TINY_STEPS) --minutes $(TINY_MINUTES)

clean:
	rm -rf .venv
