# Two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_OUT ?= demo_out

.PHONY: install demo test test-fast bench clean

install: $(VENV)/.installed

# torch goes in first and pinned (a local CPU wheel here), so the range in pyproject.toml is
# already satisfied and pip never downloads a bigger CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: install
	$(VENV)/bin/had demo --out $(DEMO_OUT)

# pytest exits 5 when it collected nothing: say so, and fail.
test: install
	@$(PY) -m pytest -q --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# CPU benchmarks (GPU: see benchmarks/RESULTS.md for the device commands).
# gdn_sass.py compiles the GDN kernels for an H100 without one; SASS_PYTHON=<venv with triton==3.6.0,
# numpy<2.4>/bin/python adds the counts of the GPU image's Triton (see benchmarks/RESULTS.md).
bench: install
	$(PY) benchmarks/bench_gdn.py --device cpu --threads 1
	$(PY) benchmarks/gdn_sass.py
	@if [ -n "$(SASS_PYTHON)" ]; then $(PY) benchmarks/gdn_sass.py --python "$(SASS_PYTHON)"; fi
	$(PY) benchmarks/bench_train.py --threads 1
	$(PY) benchmarks/bench_cache.py --quick

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
