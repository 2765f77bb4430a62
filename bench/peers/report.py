"""Builds the side-by-side table from one run's measurements.

Reads the JSON lines the peer scripts wrote into the results directory, the
ledger's burst admissions, and criterion's estimates for our benchmarks, then
prints a Markdown report and writes it to the given file.
"""

import argparse
import json
import sys
from pathlib import Path

from windows import window_stats


def read_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def criterion_benches(criterion_dir, group_dir):
    """Every benchmark criterion stored under one group: id, elements per iteration, mean ns per iteration."""
    found = []
    for bench in sorted((criterion_dir / group_dir).glob("*/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements", 1)
        found.append({"id": meta["full_id"], "elements": elements, "mean_ns": estimates["mean"]["point_estimate"]})
    return found


def fmt_rate(per_s):
    return f"{per_s:,.0f}"


def fmt_ns(ns):
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:,.1f}"


def ratio(ours, theirs):
    return f"{theirs / ours:,.0f}x" if theirs >= ours * 10 else f"{theirs / ours:,.2f}x"


def admission_section(results, criterion_dir, versions):
    lines = ["## 1. Budget admission overhead", "",
             "N requests of weight 1, one after another, against a limit too high to ever wait.", "",
             "| throttler | N | admissions/s | ns/admission | cost vs runner |", "|---|---:|---:|---:|---:|"]
    ours = [b for b in criterion_benches(criterion_dir, "peers_admission") if b["id"].endswith("reserve_observe_100k")]
    ours_ns = None
    if ours:
        ours_ns = ours[0]["mean_ns"] / ours[0]["elements"]
        lines.append(f"| runner `Ledger::reserve` + `observe` | {ours[0]['elements']:,} | {fmt_rate(1e9 / ours_ns)} "
                     f"| {fmt_ns(ours_ns)} | 1x |")
    else:
        lines.append("| runner `Ledger::reserve` + `observe` | - | not measured (criterion estimate missing) | | |")
    names = {"ccxt": f"CCXT {versions.get('ccxt', '?')} async `Throttler`",
             "hummingbot": f"Hummingbot {versions.get('hummingbot', '?')} `AsyncThrottler`"}
    for peer in ("ccxt", "hummingbot"):
        rows = read_lines(results / f"admission_{peer}.jsonl")
        if not rows:
            lines.append(f"| {names[peer]} | - | not measured (see caveats) | | |")
        for row in rows:
            vs = ratio(ours_ns, row["ns_per_admission"]) if ours_ns else "-"
            lines.append(f"| {names[peer]} | {row['n']:,} | {fmt_rate(row['admissions_per_s'])} "
                         f"| {fmt_ns(row['ns_per_admission'])} | {vs} |")
    return lines


def burst_section(results, versions):
    lines = ["## 2. Correctness under a burst", "",
             "3x the limit (300 requests of weight 1 against 100 per 1 s) arrives at once, a fraction (phase) of the "
             "way into an aligned window. Counted per fixed epoch-aligned window, as the exchange counts.", "",
             "| throttler | phase | peak in an aligned window (limit 100) | windows over the limit "
             "| utilisation per window | all 300 admitted after | peak in a sliding 1 s (not what the exchange counts) |",
             "|---|---:|---:|---:|---|---:|---:|"]
    rows = []
    for raw in sorted(results.glob("burst_runner_raw_*.json")):
        data = json.loads(raw.read_text())
        stats = window_stats(data["admitted_at_s"], data["window_s"], data["limit"])
        complete = len(data["admitted_at_s"]) == data["demand"]
        done = max(data["admitted_at_s"]) - data["started_at_s"] if complete else None
        rows.append(("runner `Ledger` (fixed aligned windows)", data["phase"], {**stats, "all_admitted_after_s": done}))
    prefix = {"ccxt": f"CCXT {versions.get('ccxt', '?')}", "hummingbot": f"Hummingbot {versions.get('hummingbot', '?')}"}
    for row in read_lines(results / "burst_peers.jsonl"):
        rows.append((f"{prefix[row['peer']]}: {row['label']}", row["phase"], row))
    for name, phase, s in sorted(rows, key=lambda r: r[1]):
        util = " / ".join(f"{u:.0%}" for u in s["utilisation"])
        done = s.get("all_admitted_after_s")
        done = f"{done:.2f} s" if done is not None else "not within the timeout"
        lines.append(f"| {name} | {phase} | {s['aligned_peak']} | {s['over_limit_windows']} | {util} | {done} "
                     f"| {s['sliding_peak']} |")
    return lines


# Our dispatch benchmarks that answer the same question as the Python loop.
DISPATCH_BENCHES = {
    "dispatch/frame_to_on_book_batched": "frame -> parse -> Lua `on_book`, a backlog in one task poll",
    "dispatch/frame_to_on_book": "frame -> parse -> Lua `on_book`, one runtime entry per event",
    "dispatch/parse_only": "frame -> parse -> quote, no Lua (where the time goes)",
}


def dispatch_section(results, criterion_dir):
    lines = ["## 3. Event dispatch", "",
             "Binance bookTicker frames parsed and handed to an `on_book` callback.", "",
             "| side | events/s | ns/event | vs Python inline |", "|---|---:|---:|---:|"]
    python = read_lines(results / "dispatch_python.jsonl")
    baseline = next((r["events_per_s"] for r in python if r["mode"] == "inline"), None)
    ours = criterion_benches(criterion_dir, "dispatch")
    if not ours:
        lines.append("| runner frame -> Lua `on_book` | not measured: `benches/dispatch.rs` is not on this branch yet | | |")
    for bench in ours:
        what = DISPATCH_BENCHES.get(bench["id"])
        if what is None:
            continue
        per_s = bench["elements"] / bench["mean_ns"] * 1e9
        vs = f"{per_s / baseline:.1f}x" if baseline else "-"
        lines.append(f"| runner `{bench['id']}`: {what} | {fmt_rate(per_s)} | {fmt_ns(1e9 / per_s)} | {vs} |")
    for row in python:
        vs = f"{row['events_per_s'] / baseline:.2f}x" if baseline else "-"
        lines.append(f"| Python asyncio, {row['mode']} ({row['events']:,} frames, median of {row['repeats']}) "
                     f"| {fmt_rate(row['events_per_s'])} | {fmt_ns(row['ns_per_event'])} | {vs} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--criterion", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    meta = json.loads((args.results / "meta.json").read_text())
    versions = meta["versions"]
    lines = ["# Side by side with widely used peers", "",
             "Measured by `bash scripts/compare_peers.sh` in one run on one machine; what each comparison measures "
             "and its caveats are in `bench/peers/README.md`.", "",
             f"- date: {meta['date']}",
             f"- machine: {meta['nproc']} cores, {meta['cpu']}; load average at start: {meta['load']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- hummingbot install: {meta['hummingbot_install']}", ""]
    lines += admission_section(args.results, args.criterion, versions) + [""]
    lines += burst_section(args.results, versions) + [""]
    lines += dispatch_section(args.results, args.criterion) + [""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
