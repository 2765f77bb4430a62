#!/usr/bin/env bash
# Checks that widely used Binance clients work against `runner sim`: creates a throw-away venv,
# installs CCXT and Binance's official binance-sdk-spot from PyPI, starts the simulator on a free
# port with an Ed25519 key (for the WebSocket API's session.logon), runs scripts/clients_check.py
# and writes its output to benches/results/clients_check.md. Not part of `cargo test`.
#
# Usage: scripts/clients_check.sh   [RUNNER_BIN=…]   (needs python3 with venv, openssl, cargo, network to PyPI)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'kill "${sim_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
if ! "$work/venv/bin/pip" install -q ccxt binance-sdk-spot >"$work/pip.log" 2>&1; then
    echo "pip install failed:"; cat "$work/pip.log"; exit 1
fi
versions="$("$work/venv/bin/pip" list 2>/dev/null | grep -Ei '^(ccxt|binance-sdk-spot|binance-common) ' || true)"

openssl genpkey -algorithm ed25519 -out "$work/ed25519.pem" 2>/dev/null
openssl pkey -in "$work/ed25519.pem" -pubout -out "$work/ed25519.pub.pem"

# RUNNER_BIN=path/to/runner skips the build.
if [ -z "${RUNNER_BIN:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
fi
runner="${RUNNER_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/runner}"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$runner" sim --port "$port" --ed25519-key "clients-check=$work/ed25519.pub.pem" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/api/v3/ping" >/dev/null && break
    sleep 0.1
done

# The paper credentials, as the simulator prints them at start (colours stripped).
field() {
    python3 - "$work/sim.log" "$1" <<'PY'
import re, sys
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
print(re.search(sys.argv[2] + r'="?([^"\s]+)', text).group(1))
PY
}
key="$(field api_key)"
secret="$(field api_secret)"

out="$root/benches/results/clients_check.md"
{
    echo "# Clients against \`runner sim\`"
    echo
    echo "Recorded by \`scripts/clients_check.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(cd "$root" && git rev-parse --short HEAD)."
    echo "Packages installed from PyPI at run time:"
    echo
    echo '```'
    echo "$versions"
    echo '```'
    echo
    echo '```'
    "$work/venv/bin/python" "$root/scripts/clients_check.py" "$port" "$key" "$secret" clients-check "$work/ed25519.pem" 2>&1
    echo '```'
} | tee "$out"
