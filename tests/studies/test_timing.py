import json
import os
import subprocess
import sys

from dcn_keras.backend import tf
from dcn_keras.studies import timing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


_MEMORY_SCRIPT = """
import json
from dcn_keras.backend import tf
from dcn_keras.studies.timing import call_memory_bytes
held = tf.ones([10 * 2**20 // 4])  # 10 MB, held before the call.
fn = tf.function(lambda x: tf.tile(x, [4])[::1000])  # A 40 MB temporary.
print(json.dumps(call_memory_bytes(fn, (held,))))
"""


def test_call_memory_is_what_the_call_adds_above_what_was_held():
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CPU_ALLOCATOR_USE_BFC="true")
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=300,
                          env=environment, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    memory = json.loads(done.stdout.splitlines()[-1])
    assert 40 * 2**20 <= memory["own"] < 80 * 2**20  # (The allocator rounds chunks up.)
    assert memory["peak"] - memory["own"] >= 10 * 2**20  # The held tensor counts in the peak only.
    if "TF_CPU_ALLOCATOR_USE_BFC" not in os.environ:  # TensorFlow's default CPU allocator: not reported.
        assert timing.call_memory_bytes(lambda: 1, ()) is None
