"""Wall-clock timing that compares calls like with like, and peak memory."""

import statistics
import time

from dcn_keras.backend import tf


def _fetch(value):
    # Tensors are fetched to host memory; NumPy outputs (LiteRT's) already are.
    return [t.numpy() if hasattr(t, "numpy") else t for t in tf.nest.flatten(value)]


def median_seconds(fn, args, warmup, repeats):
    """Median wall-clock seconds of `fn(*args)` (outputs fetched) after warm-up."""
    return interleaved_median_seconds({0: (fn, args)}, warmup, repeats, burst=1)[0]


def interleaved_median_seconds(calls, warmup, repeats, burst=3):
    """Median seconds of each of several calls, timed in interleaved rounds.

    Timing one call after another in blocks lets a slow spell of the machine
    (another process, a frequency change) land on whichever call was being
    timed, so ratios between calls drift from run to run. Here every round
    runs each call `burst` times in a row (the order rotates by one each
    round) and keeps all but the first of them, which re-warms the caches
    the other calls evicted: the medians describe back-to-back calls, as a
    server repeating one model sees, under the same machine conditions.

    Args:
        calls: dict, key -> `(fn, args)`.
        warmup: int, untimed calls of each before the first round.
        repeats: int, timed calls of each (rounded up to whole rounds).
        burst: int, consecutive calls per round; 1 keeps every call.

    Returns:
        dict, key -> median seconds.
    """
    keys, kept = list(calls), max(1, burst - 1)
    for fn, args in calls.values():
        for _ in range(warmup):
            _fetch(fn(*args))
    times = {key: [] for key in keys}
    for round_ in range(-(-repeats // kept)):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            fn, args = calls[key]
            for call in range(burst):
                start = time.perf_counter()
                _fetch(fn(*args))
                if burst == 1 or call > 0:
                    times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) for key, t in times.items()}


def call_memory_bytes(fn, args):
    """Bytes the CPU allocator held while running `fn(*args)` once: `{"peak", "own"}`, or None.

    `peak` is the allocator's peak during the call, so it counts whatever was
    already held (the weights, the inputs, other batches a benchmark keeps);
    `own` is the peak above that: the call's activations, temporaries and
    outputs, what one more request costs. TensorFlow reports the CPU
    allocator only when it is its BFC allocator (`TF_CPU_ALLOCATOR_USE_BFC=true`
    before TensorFlow starts, as `bin/dcn_bench` sets it); else None.
    """
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        _fetch(fn(*args))
        peak = int(tf.config.experimental.get_memory_info("CPU:0")["peak"])
    except (ValueError, tf.errors.InvalidArgumentError):
        return None  # Not reported by this allocator.
    return {"peak": peak, "own": peak - int(before)}
