"""Counts admissions the way the exchange does: per fixed window aligned to the epoch."""

import math


def window_stats(admitted_at_s, window_s, limit):
    """Per-window counts from admission wall-clock times (epoch seconds).

    Returns the peak count of any aligned window, each window's utilisation
    (admitted / limit) from the first admission's window to the last one's, the
    peak count of any sliding window of the same length (for comparison only: the
    exchange does not count that way), and the time from the first to the last
    admission.
    """
    if not admitted_at_s:
        return {"admitted": 0}
    times = sorted(admitted_at_s)
    first_window = math.floor(times[0] / window_s)
    last_window = math.floor(times[-1] / window_s)
    counts = [0] * (last_window - first_window + 1)
    for t in times:
        counts[math.floor(t / window_s) - first_window] += 1
    sliding_peak, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window_s:
            lo += 1
        sliding_peak = max(sliding_peak, hi - lo + 1)
    return {
        "admitted": len(times),
        "aligned_peak": max(counts),
        "over_limit_windows": sum(1 for c in counts if c > limit),
        "utilisation": [round(c / limit, 3) for c in counts],
        "sliding_peak": sliding_peak,
        "span_s": round(times[-1] - times[0], 3),
    }
