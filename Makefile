# The two quick-start commands: `make demo` (the main job) and `make test`. Each builds .venv/ itself.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
DEMO_ARGS ?=

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

clean:
	rm -rf build $(VENV)
