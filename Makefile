# tortie — two commands do all the setup on a fresh Debian 12 machine as root:
#   make demo    the main job
#   make test    the full test suite
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test unit lint demo bench clean

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/run-tests.sh

lint: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy --strict

demo: setup
	@bash scripts/demo.sh

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
