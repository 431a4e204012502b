# Two commands: `make run` (dashboard on the demo workspace) and `make test` (the whole suite).
# Both create/refresh one virtual environment and are fast when nothing changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8501
export PREFILTER_QA_HOME ?= $(CURDIR)/workspace

.PHONY: run test install install-test chromium worker bench clean-workspace

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changes.
# ./line (prefilter-qa-line, the torch-free line scorer) is installed from the repo with the app.
$(VENV)/.installed: pyproject.toml line/pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ./line -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml line/pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e "./line[test]" -e ".[test,bench,ray]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test chromium

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# On an empty workspace the demo also gets one DFR training (a few minutes on a CPU), so Results and
# Thresholds have content soon after the first start.
run: install
	$(VENV)/bin/prefilter-qa demo --first-training
	$(VENV)/bin/prefilter-qa users init --address $(HOST) --url http://$(HOST):$(PORT)
	@set -e; $(VENV)/bin/prefilter-qa worker & WORKER=$$!; \
	trap 'kill $$WORKER 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/streamlit run streamlit_app.py --server.address $(HOST) --server.port $(PORT) \
		--server.fileWatcherType none --server.headless true --browser.gatherUsageStats false

test: install-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(PY) -m bench.speed
	$(PY) -m bench.scale
