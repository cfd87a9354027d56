# Developer targets. `make setup` once, then `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint format typecheck bench-latency bench-throughput bench-quality bench-languages editors-test

setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e '.[dev,bench,coder]'

demo:
	$(BIN)/suggest-ls check
	$(BIN)/suggest-ls complete examples/demo.py:4:12 --repeat 3

test:
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check suggest_ls tests scripts
	$(BIN)/ruff format --check suggest_ls tests scripts

format:
	$(BIN)/ruff format suggest_ls tests scripts
	$(BIN)/ruff check --fix suggest_ls tests scripts

typecheck:
	$(BIN)/mypy suggest_ls

bench-latency:
	$(BIN)/suggest-ls bench latency --out bench-results/latency.json

bench-throughput:
	$(BIN)/suggest-ls bench throughput --out bench-results/throughput.json

editors-test:
	./scripts/editors-e2e.sh

bench-quality:
	$(BIN)/suggest-ls bench quality --out bench-results/quality.json

bench-languages:
	$(BIN)/suggest-ls bench languages --out bench-results/languages.json
