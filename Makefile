# `make demo` and `make test` set up everything themselves in .venv.
# torch==2.13.0 is installed first so that pip never resolves a CUDA build.
VENV   := .venv
PYTHON := $(VENV)/bin/python
READY  := $(VENV)/.ready
DOCS_READY := $(VENV)/.docs-ready

.PHONY: demo test lint bench docs clean

$(READY): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(READY)

demo: $(READY)
	$(VENV)/bin/nce demo --out demo-output

test: $(READY)
	$(PYTHON) -m pytest -q -n 2

lint: $(READY)
	$(VENV)/bin/ruff check src tests benchmarks examples tools conftest.py

bench: $(READY)
	$(PYTHON) benchmarks/bench_losses.py

# The docs extra is installed on top of dev only when the docs are built, so that `make test`
# installs no more than before.
$(DOCS_READY): $(READY)
	$(PYTHON) -m pip install --quiet -e ".[docs]"
	touch $(DOCS_READY)

# The API reference from the docstrings, offline, into site/; any warning fails the build.
docs: $(DOCS_READY)
	$(PYTHON) -m sphinx -E -W --keep-going -q -b html docs site

clean:
	rm -rf $(VENV) demo-output .pytest_cache site
