# The two quick-start commands: `make demo` (the main job) and `make test`. Each builds .venv/ itself.
# `make bench`: the throughput gate (short loader and train benches, compared with benchmarks/baselines/).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
DEMO_ARGS ?=
BENCH_OUT ?= benchmarks/work/gate
BENCH_TOLERANCE ?= 10

.PHONY: demo test bench clean

$(STAMP): pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dali,test,scale]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/echoclr demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(VENV)/bin/echoclr bench loader --gate --out $(BENCH_OUT)
	$(VENV)/bin/echoclr bench train --gate --out $(BENCH_OUT)
	$(VENV)/bin/echoclr bench compare benchmarks/baselines $(BENCH_OUT) --tolerance $(BENCH_TOLERANCE) \
		--markdown $(BENCH_OUT)/compare.md

clean:
	rm -rf build $(VENV)
