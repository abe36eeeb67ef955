# ECG Lab. `make run` sets up and starts the app; `make test` sets up and runs the tests.
# The virtual environment lives outside the clone, keyed on the hash of requirements.txt,
# so a second clone (or CI on the same machine) reuses it instead of reinstalling.
SHELL := /bin/bash
PYTHON ?= python3
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-12)
VENV ?= $(HOME)/.cache/ecglab/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: venv run test test-fast lint bench browser-deps clean-venv

# No prerequisite: the folder name already carries the hash of requirements.txt, and a fresh clone's newer file time
# must not trigger a reinstall of an identical environment.
$(VENV)/.ready:
	@# .ready is written last: an interrupted install is redone from scratch next time
	@rm -rf $(VENV) && mkdir -p $(dir $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	@touch $@

venv: $(VENV)/.ready

run: venv
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: venv
	$(PY) -m pytest -q -n 2 tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not browser" tests

lint: venv
	$(PY) -m ruff check .

bench: venv
	$(PY) -m pipelines.bench

clean-venv:
	rm -rf $(VENV)
