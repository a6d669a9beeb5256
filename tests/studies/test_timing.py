from dcn_keras.studies import timing
from dcn_keras.backend import tf


def test_interleaved_timing_rotates_rounds_and_drops_each_bursts_first_call(monkeypatch):
    clock, order = [0.0], []

    def call(name, seconds, first_extra):
        def fn(x):
            # The first call of a burst is slower (cold caches): it must not count.
            cold = not order or order[-1] != name
            order.append(name)
            clock[0] += seconds + (first_extra if cold else 0.0)
            return tf.constant(x)
        return fn

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls = {"a": (call("a", 1.0, 5.0), (0,)), "b": (call("b", 2.0, 5.0), (0,)),
             "c": (call("c", 3.0, 5.0), (0,))}
    medians = timing.interleaved_median_seconds(calls, warmup=1, repeats=4, burst=3)
    assert medians == {"a": 1.0, "b": 2.0, "c": 3.0}
    timed = order[3:]  # After one warm-up call of each.
    rounds = ["".join(timed[i:i + 9:3]) for i in range(0, len(timed), 9)]
    assert rounds == ["abc", "bca"] and len(timed) == 2 * 9
    # One call alone keeps every call, the cold one too.
    assert timing.median_seconds(calls["b"][0], (0,), warmup=0, repeats=1) == 2.0 + 5.0
