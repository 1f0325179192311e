# `make demo` and `make test` work from a clean clone on Debian/Ubuntu with Python 3.11+,
# as root or not: they create .venv, install the project, and (for tests) the system tools.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# the suite runs on this many workers (pytest-xdist), each test file whole on one of them
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile
DEMO_PORT ?= 8080

.PHONY: demo test test-fast lint bench dist system-deps clean help

help:
	@echo "make demo       run a simulated community site with its web UI (http://127.0.0.1:8080/)"
	@echo "make test       install what the tests need and run the whole suite, soak and rollout included"
	@echo "make test-fast  the same without the soak (marked slow) and the rollout"
	@echo "make test-rollout  only the Ansible rollout test over three local gateways (about 3.5 minutes)"
	@echo "make lint       ruff, mypy and lint-imports (the rule of the arrows, docs/architecture.md)"
	@echo "make bench      every benchmark in --quick mode"
	@echo "make dist       the offline bundle (wheels + install.sh) in build/dist/, docs/fleet.md"

$(STAMP): pyproject.toml scripts/bootstrap-venv.sh
	@PYTHON=$(PYTHON) sh scripts/bootstrap-venv.sh $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all,test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge demo --data-dir demo-data --port $(DEMO_PORT)

system-deps:
	@sh scripts/setup-system.sh

# on two workers the whole suite fits in its time, the soak (marked slow) and the Ansible rollout
# over three gateways (marked rollout, ~3.5 min of playbook runs on one worker) included
test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-rollout: $(STAMP) system-deps
	$(BIN)/python -m pytest -m rollout $(PYTEST_ARGS)

test-fast: $(STAMP) system-deps
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not rollout" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --exclude '*.md' .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	@for b in bench/[a-z]*.py; do m=$$(basename $$b .py); echo "== bench.$$m"; $(BIN)/python -m bench.$$m --quick || exit 1; done

# the wheels of the project and every dependency for this Python and architecture, and the
# installer; PLATFORM=manylinux2014_aarch64 PYVER=3.11 for another one (docs/fleet.md)
dist: $(STAMP)
	@PYTHON=$(BIN)/python sh scripts/make-dist.sh

clean:
	rm -rf $(VENV) demo-data build *.egg-info
