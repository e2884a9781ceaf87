# The two set-up commands of the README: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPX    := $(VENV)/bin/spx
STAMP  := $(VENV)/.installed

.PHONY: install run test test-all lint typecheck clean

install: $(STAMP)

# torch is installed first and alone so pip resolves the CPU wheel on disk; the project
# pins the same version, so nothing can pull a CUDA build afterwards.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,deepspeed]"
	touch $@

# Each run is a new sweep (names are unique per store), so `make run` works every time.
run: install
	$(SPX) sweep launch examples/quickstart.yaml --name quickstart-$$(date +%Y%m%d-%H%M%S)

test: install
	$(PY) -m pytest -m "not slow" -q

test-all: install
	$(PY) -m pytest -q

# mypy cannot see the installed layout (spx.platform lives in ./platform), so it checks a
# tree of links shaped like the installed package.
typecheck: install
	rm -rf build/typecheck && mkdir -p build/typecheck/spx
	for f in spx/*.py; do ln -s ../../../$$f build/typecheck/spx/; done
	for d in platform workers search kernels dashboards; do ln -s ../../../$$d build/typecheck/spx/$$d; done
	cd build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p spx

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) typecheck

clean:
	rm -rf build dist *.egg-info
