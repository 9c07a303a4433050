# tfy-audit: `make demo` runs the main job on the simulator and DuckDB; `make test` runs the tests.
# Both install what they need first (uv, then the locked dependencies into .venv).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
N ?= 100000

.PHONY: install demo test lint format bench clean

$(UV):
	$(PYTHON) -m pip install --quiet --user "uv==$(UV_VERSION)" || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"

$(BIN)/tfy-audit: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python 3.11
	@touch $@

install: $(BIN)/tfy-audit

demo: install
	$(BIN)/tfy-audit demo

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/ruff format --check pipelines tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix pipelines tests bench
	$(BIN)/ruff format pipelines tests bench

bench: install
	$(BIN)/python -m bench.run --events $(N)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tfy_audit_demo.duckdb .tfy-audit
