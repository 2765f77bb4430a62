"""Builds the side-by-side table from one run's measurements.

Reads the JSON lines the peer scripts wrote into the results directory, the
ledger's burst admissions, and criterion's estimates for our benchmarks, then
prints a Markdown report and writes it to the given file. Every figure in the
report, the summary included, is computed from those measurements.
"""

import argparse
import json
import sys
from pathlib import Path

from windows import window_stats

# Our dispatch benchmarks that answer the same question as the Python loop.
DISPATCH_BENCHES = {
    "dispatch/frame_to_on_book": "frame -> parse -> Lua `on_book`, one runtime entry per event",
    "dispatch/frame_to_on_book_batched": "frame -> parse -> Lua `on_book`, a backlog in one task poll",
    "dispatch/parse_only": "frame -> parse -> quote, no Lua (where the time goes)",
}
RUNNER_BURST = "runner `Ledger` (fixed aligned windows)"


def read_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def criterion_benches(criterion_dir, group_dir):
    """Every benchmark criterion stored under one group: id and mean ns per element."""
    found = []
    for bench in sorted((criterion_dir / group_dir).glob("*/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements", 1)
        found.append({"id": meta["full_id"], "elements": elements,
                      "ns": estimates["mean"]["point_estimate"] / elements})
    return found


def fmt_rate(per_s):
    return f"{per_s:,.0f}"


def fmt_ns(ns):
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:,.1f}"


def fmt_times(x):
    return f"{x:,.0f}x" if x >= 10 else f"{x:,.1f}x"


def load_admission(results, criterion_dir, versions):
    ours = next((b for b in criterion_benches(criterion_dir, "peers_admission")
                 if b["id"].endswith("reserve_observe_100k")), None)
    names = {"ccxt": f"CCXT {versions.get('ccxt', '?')} async `Throttler`",
             "hummingbot": f"Hummingbot {versions.get('hummingbot', '?')} `AsyncThrottler`"}
    peers = [{**row, "name": names[peer]} for peer in ("ccxt", "hummingbot")
             for row in read_lines(results / f"admission_{peer}.jsonl")]
    return ours, peers


def load_burst(results, versions):
    rows = []
    for raw in sorted(results.glob("burst_runner_raw_*.json")):
        data = json.loads(raw.read_text())
        stats = window_stats(data["admitted_at_s"], data["window_s"], data["limit"])
        complete = len(data["admitted_at_s"]) == data["demand"]
        stats["all_admitted_after_s"] = max(data["admitted_at_s"]) - data["started_at_s"] if complete else None
        rows.append({"name": RUNNER_BURST, "phase": data["phase"], "config": "runner", **stats})
    prefix = {"ccxt": f"CCXT {versions.get('ccxt', '?')}", "hummingbot": f"Hummingbot {versions.get('hummingbot', '?')}"}
    for row in read_lines(results / "burst_peers.jsonl"):
        rows.append({**row, "name": f"{prefix[row['peer']]}: {row['label']}"})
    return sorted(rows, key=lambda r: r["phase"])


def load_dispatch(results, criterion_dir):
    ours = [b for b in criterion_benches(criterion_dir, "dispatch") if b["id"] in DISPATCH_BENCHES]
    return ours, read_lines(results / "dispatch_python.jsonl")


def admission_section(ours, peers):
    lines = ["## 1. Budget admission overhead", "",
             "N requests of weight 1, one after another, against a limit too high to ever wait.", "",
             "| throttler | N | admissions/s | ns/admission | cost vs runner |", "|---|---:|---:|---:|---:|"]
    if ours:
        lines.append(f"| runner `Ledger::reserve` + `observe` | {ours['elements']:,} | {fmt_rate(1e9 / ours['ns'])} "
                     f"| {fmt_ns(ours['ns'])} | 1x |")
    else:
        lines.append("| runner `Ledger::reserve` + `observe` | - | not measured (criterion estimate missing) | | |")
    for row in peers:
        vs = fmt_times(row["ns_per_admission"] / ours["ns"]) if ours else "-"
        lines.append(f"| {row['name']} | {row['n']:,} | {fmt_rate(row['admissions_per_s'])} "
                     f"| {fmt_ns(row['ns_per_admission'])} | {vs} |")
    return lines


def burst_section(rows):
    lines = ["## 2. Correctness under a burst", "",
             "3x the limit (300 requests of weight 1 against 100 per 1 s) arrives at once, a fraction (phase) of the "
             "way into an aligned window. Counted per fixed epoch-aligned window, as the exchange counts.", "",
             "| throttler | phase | peak in an aligned window (limit 100) | windows over the limit "
             "| utilisation per window | all 300 admitted after | peak in a sliding 1 s (not what the exchange counts) |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for s in rows:
        util = " / ".join(f"{u:.0%}" for u in s["utilisation"])
        done = s.get("all_admitted_after_s")
        done = f"{done:.2f} s" if done is not None else "not within the timeout"
        lines.append(f"| {s['name']} | {s['phase']} | {s['aligned_peak']} | {s['over_limit_windows']} | {util} "
                     f"| {done} | {s['sliding_peak']} |")
    return lines


def dispatch_section(ours, python):
    lines = ["## 3. Event dispatch", "",
             "Binance bookTicker frames parsed and handed to an `on_book` callback.", "",
             "| side | events/s | ns/event | vs Python inline |", "|---|---:|---:|---:|"]
    baseline = next((r["events_per_s"] for r in python if r["mode"] == "inline"), None)
    if not ours:
        lines.append("| runner frame -> Lua `on_book` | not measured: `benches/dispatch.rs` is not on this branch | | |")
    for bench in ours:
        per_s = 1e9 / bench["ns"]
        vs = fmt_times(per_s / baseline) if baseline else "-"
        lines.append(f"| runner `{bench['id']}`: {DISPATCH_BENCHES[bench['id']]} | {fmt_rate(per_s)} "
                     f"| {fmt_ns(bench['ns'])} | {vs} |")
    for row in python:
        vs = f"{row['events_per_s'] / baseline:.2f}x" if baseline else "-"
        lines.append(f"| Python asyncio, {row['mode']} ({row['events']:,} frames, median of {row['repeats']}) "
                     f"| {fmt_rate(row['events_per_s'])} | {fmt_ns(row['ns_per_event'])} | {vs} |")
    return lines


def summary(admission, burst, dispatch):
    """The claims the figures support, stated with the figures."""
    lines = ["## Summary", ""]
    ours, peers = admission
    if ours and peers:
        for row in peers:
            lines.append(f"- Admission: {row['name']} costs {fmt_times(row['ns_per_admission'] / ours['ns'])} ours "
                         f"per request at N = {row['n']:,} ({fmt_ns(row['ns_per_admission'])} ns vs "
                         f"{fmt_ns(ours['ns'])} ns).")
    for phase in sorted({r["phase"] for r in burst}):
        at = [r for r in burst if r["phase"] == phase]
        runner = next((r for r in at if r["config"] == "runner"), None)
        others = [r for r in at if r["config"] != "runner"]
        if runner is None or not others:
            continue
        over = [f"{r['name']} (peak {r['aligned_peak']})" for r in others if r["over_limit_windows"]]
        safe = [r for r in others if not r["over_limit_windows"] and r.get("all_admitted_after_s") is not None]
        ours_ok = "stayed within" if runner["over_limit_windows"] == 0 else "EXCEEDED"
        text = (f"- Burst at phase {phase}: runner {ours_ok} every aligned window (peak {runner['aligned_peak']}) "
                f"and had all 300 admitted after {runner['all_admitted_after_s']:.2f} s")
        if safe:
            best = min(safe, key=lambda r: r["all_admitted_after_s"])
            text += (f"; the quickest peer that also stayed within, {best['name']}, took "
                     f"{best['all_admitted_after_s']:.2f} s")
        text += "."
        if over:
            text += " Over the limit: " + ", ".join(over) + "."
        under = [f"{r['name']} ({min(r['utilisation'][1:-1]):.0%})" for r in others
                 if len(r["utilisation"]) > 2 and min(r["utilisation"][1:-1]) < 1.0]
        if under:
            text += " A window between the first and the last left under-used: " + ", ".join(under) + "."
        lines.append(text)
    ours, python = dispatch
    baseline = next((r for r in python if r["mode"] == "inline"), None)
    on_book = [b for b in ours if b["id"] != "dispatch/parse_only"]
    if on_book and baseline:
        best = min(on_book, key=lambda b: b["ns"])
        lines.append(f"- Dispatch: runner `{best['id']}` handles {fmt_rate(1e9 / best['ns'])} events/s, "
                     f"{fmt_times(1e9 / best['ns'] / baseline['events_per_s'])} a plain Python asyncio loop "
                     f"({fmt_rate(baseline['events_per_s'])} events/s in this run).")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--criterion", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    meta = json.loads((args.results / "meta.json").read_text())
    versions = meta["versions"]
    admission = load_admission(args.results, args.criterion, versions)
    burst = load_burst(args.results, versions)
    dispatch = load_dispatch(args.results, args.criterion)
    lines = ["# Side by side with widely used peers", "",
             "Measured by `bash scripts/compare_peers.sh` in one run on one machine; what each comparison measures "
             "and its caveats are in `benches/peers/README.md`.", "",
             f"- date: {meta['date']}",
             f"- machine: {meta['nproc']} cores, {meta['cpu']}; load average at start: {meta['load']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- hummingbot install: {meta['hummingbot_install']}", ""]
    lines += summary(admission, burst, dispatch) + [""]
    lines += admission_section(*admission) + [""]
    lines += burst_section(burst) + [""]
    lines += dispatch_section(*dispatch) + [""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
