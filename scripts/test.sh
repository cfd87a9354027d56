#!/usr/bin/env bash
# The whole test suite (unit, engine, end to end through a real LSP client and Neovim).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
