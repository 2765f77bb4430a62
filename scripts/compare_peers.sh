#!/usr/bin/env bash
# Side-by-side comparison with CCXT and Hummingbot, measured in one run on this machine.
# Builds a Python venv with pinned peers, runs their benchmarks and ours on the same
# workloads, prints one table and writes it to benches/results/peers.md.
# Not part of `cargo test`: it downloads the peers from PyPI. See benches/peers/README.md.
set -euo pipefail

CCXT_VERSION=4.5.90
HUMMINGBOT_VERSION=20260922
HUMMINGBOT_SDIST_SHA256=af2012e5fbc66c23844d64e93056dad70aea1eb1b169b6f986b22fd726c4c2c6
# The Hummingbot modules the throttler imports need pandas (its logger).
PANDAS_VERSION=3.1.1

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$ROOT/target/peers-venv
RESULTS=$ROOT/target/peers-results
CRITERION=$CARGO_TARGET_DIR/criterion
PY=$VENV/bin/python
BENCH=$ROOT/benches/peers

step() { printf '\n== %s\n' "$*" >&2; }

step "Python venv with pinned peers ($VENV)"
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --disable-pip-version-check "ccxt==$CCXT_VERSION" "pandas==$PANDAS_VERSION"

# A full `pip install hummingbot` is tried once and its outcome remembered. When it
# cannot install (its dependency pins need a newer Python than this one), the throttler
# is loaded from the same pinned source distribution: those modules are pure Python.
HB_STATUS=$VENV/hummingbot-install.txt
if [ ! -s "$HB_STATUS" ]; then
    if "$PY" -m pip install -q --disable-pip-version-check "hummingbot==$HUMMINGBOT_VERSION" >"$VENV/hummingbot-pip.log" 2>&1; then
        echo "pip install hummingbot==$HUMMINGBOT_VERSION" >"$HB_STATUS"
    else
        reason=$(grep -m1 '^ERROR: Could not find\|^ERROR: No matching' "$VENV/hummingbot-pip.log" || tail -n1 "$VENV/hummingbot-pip.log")
        src=$VENV/src
        mkdir -p "$src"
        "$PY" -m pip download -q --disable-pip-version-check --no-deps "hummingbot==$HUMMINGBOT_VERSION" -d "$src"
        sdist=$src/hummingbot-$HUMMINGBOT_VERSION.tar.gz
        echo "$HUMMINGBOT_SDIST_SHA256  $sdist" | sha256sum -c --quiet -
        tar xzf "$sdist" -C "$src"
        site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        echo "$src/hummingbot-$HUMMINGBOT_VERSION" >"$site/hummingbot-sdist.pth"
        echo "\`pip install hummingbot==$HUMMINGBOT_VERSION\` fails on Python $("$PY" -c 'import platform; print(platform.python_version())') (${reason}); its pure-Python throttler modules are imported from the same release's sdist (sha256 verified), without its compiled parts" >"$HB_STATUS"
    fi
fi
"$PY" -c 'import hummingbot.core.api_throttler.async_throttler' \
    || { echo "Hummingbot's throttler cannot be imported; see $HB_STATUS" >&2; exit 1; }

rm -rf "$RESULTS" "$CRITERION/peers_admission" "$CRITERION/dispatch"
mkdir -p "$RESULTS"

step "Recording the machine and versions"
"$PY" - "$RESULTS/meta.json" "$HB_STATUS" "$HUMMINGBOT_VERSION" <<'EOF'
import datetime, json, os, platform, subprocess, sys
import ccxt
out, hb_status, hb_version = sys.argv[1:4]
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "unknown")
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "nproc": os.cpu_count(),
    "cpu": cpu,
    "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    "hummingbot_install": open(hb_status).read().strip(),
    "versions": {
        "runner": "this commit " + subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()[1],
        "python": platform.python_version(),
        "ccxt": ccxt.__version__,
        "hummingbot": hb_version,
    },
}, open(out, "w"))
EOF

step "Building our benchmarks"
cargo bench --bench peers_reference --no-run
has_dispatch=0
if [ -f benches/dispatch.rs ]; then
    has_dispatch=1
    cargo bench --bench dispatch --no-run
fi

step "1. Admission: ours (criterion), then CCXT (100k) and Hummingbot (its cost grows with the window's log; 1k and 2k)"
cargo bench --bench peers_reference -- peers/admission
(cd "$BENCH" && "$PY" admission.py ccxt --n 100000 --repeats 5) | tee "$RESULTS/admission_ccxt.jsonl"
(cd "$BENCH" && "$PY" admission.py hummingbot --n 1000 2000 --repeats 1) | tee "$RESULTS/admission_hummingbot.jsonl"

step "2. Burst of 3x the limit, arriving mid-window and late in a window: ours, then each peer configuration"
for phase in 0.5 0.9; do
    PEERS_BURST_OUT="$RESULTS/burst_runner_raw_$phase.json" PEERS_BURST_PHASE=$phase cargo bench --bench peers_reference
    for config in ccxt-leaky-default ccxt-leaky-burst ccxt-rolling hummingbot; do
        (cd "$BENCH" && "$PY" burst.py "$config" --phase "$phase") | tee -a "$RESULTS/burst_peers.jsonl"
    done
done

step "3. Dispatch: Python asyncio (1M frames), then ours"
(cd "$BENCH" && "$PY" dispatch.py --events 1000000 --repeats 3) | tee "$RESULTS/dispatch_python.jsonl"
if [ "$has_dispatch" = 1 ]; then
    cargo bench --bench dispatch -- 'dispatch/(parse_only|frame_to_on_book)'
else
    echo "benches/dispatch.rs is not on this branch; our dispatch side is left out" >&2
fi

step "Report"
(cd "$BENCH" && "$PY" report.py --results "$RESULTS" --criterion "$CRITERION" --out "$ROOT/benches/results/peers.md")
