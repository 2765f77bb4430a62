#!/usr/bin/env bash
# Market data into Lua, end to end (benches/market_data_e2e.rs), beside a Python asyncio loop on the same
# feed in the same run. Not part of `cargo test`: it installs Python's `websockets` from PyPI into a venv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/target/md-e2e-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'websockets>=13'
fi
cd "$ROOT"
MD_E2E_PYTHON="$VENV/bin/python" cargo bench --bench market_data_e2e "$@"
