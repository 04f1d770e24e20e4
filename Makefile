# Two commands on a fresh machine: `make run` opens cxrinspect on the bundled samples, `make test` runs the tests.
# Each creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: venv
	$(VENV)/bin/python -m cxrinspect.gui resources/samples

test: venv
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: venv
	$(PY) bench/predict_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
