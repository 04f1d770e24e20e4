# Two commands on a fresh machine: `make run` opens cxrinspect on the bundled samples, `make test` runs the tests.
# Each creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench venv clean package package-check

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

# ---- the frozen desktop build (packaging/): CPU torch, one folder, one tarball
# CUDA variant: make package TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
BUILD_VENV ?= build/venv
TORCH_SPEC ?= torch==2.13.0
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' cxrinspect/__init__.py)
TARBALL := dist/cxrinspect-$(VERSION)-linux-x86_64.tar.gz

$(BUILD_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install --quiet $(TORCH_SPEC)
	$(BUILD_VENV)/bin/pip install --quiet . pyinstaller pyinstaller-hooks-contrib
	touch $@

package: $(BUILD_VENV)/.installed
	$(BUILD_VENV)/bin/pip install --quiet --no-deps --force-reinstall .
	rm -rf dist/cxrinspect dist/share dist/install.sh $(TARBALL)
	$(BUILD_VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/cxrinspect.spec
	ln -s cxrinspect dist/cxrinspect/cxrinspect-train
	mkdir -p dist/share
	cp packaging/cxrinspect.desktop packaging/io.github.cxrinspect.metainfo.xml dist/share/
	cp packaging/install.sh dist/install.sh
	tar -C dist --transform='flags=r;s,^,cxrinspect-$(VERSION)/,' -czf $(TARBALL).tmp install.sh share cxrinspect
	mv $(TARBALL).tmp $(TARBALL)
	@du -sh dist/cxrinspect $(TARBALL)

package-check: package
	packaging/check.sh dist/cxrinspect $(TARBALL)

clean:
	rm -rf $(VENV) build dist *.egg-info
