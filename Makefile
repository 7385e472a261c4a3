# lookalike: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint docs wheel-check models clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lookalike.demo --images demo-images --db demo-index --out demo-results.png

# what CI runs: every test, the 25 slowest listed at the end
test: $(STAMP)
	$(PY) -m pytest -q --durations=25

# the tests without the heavy tiers (`slow`: wheel, PostgreSQL, kill/resume, servers, training, DDPM; `browser`)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

# ruff on the whole tree, mypy on the public modules (.ci/typecheck)
lint: $(STAMP)
	$(PY) -m ruff check .
	bash .ci/typecheck $(PY)

# the API reference, built offline from the docstrings (pdoc, in the dev extra): open docs/api/index.html
API_MODULES := lookalike lookalike.errors lookalike.settings lookalike.protocols lookalike.log lookalike.retrieval \
               lookalike.indexer lookalike.ui.api
docs: $(STAMP)
	rm -rf docs/api
	$(PY) -m pdoc --docformat restructuredtext --output-directory docs/api $(API_MODULES)
	@echo "docs: docs/api/index.html"

# the wheel as a user gets it: built, installed into a fresh venv, run offline from an empty folder (.ci/wheel-check)
wheel-check: $(STAMP)
	bash .ci/wheel-check $(PY)

clean:
	rm -rf demo-images demo-index demo-results.png .pytest_cache build dist docs/api

# the shipped embedders and noise estimator as ONNX (retrieval/weights/onnx/): what the core install runs without torch;
# the wheel build does this itself (setup.py)
models: $(STAMP)
	$(PY) -m lookalike.retrieval.export
