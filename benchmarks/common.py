"""What the benchmark scripts share: timing contenders in alternation, timing each op of
a step, and the command-line entry that turns a documented error into one line and exit
status 1."""
from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time

from tinygrad_nlp import TinygradNLPError, backend
from tinygrad_nlp.tensor import Function


def time_alternating(contenders, repeats, warmup, settle: float = 0.0):
    """{name: [seconds per run]}: every contender runs ``warmup`` times untimed, then
    once per round for ``repeats`` rounds, so drift in machine load hits all alike.
    ``settle`` seconds of idle come before each timed run: long enough (0.25 s) for the
    previous contender's idle BLAS and OpenMP workers to stop spinning (OpenBLAS's spin
    for about 0.1 s after a product, PyTorch's OpenMP pool after an op), which would
    otherwise hold a core through the start of the next one's run."""
    for run in contenders.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            time.sleep(settle)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


# the pause before each timed run of a whole step or forward (time_alternating's settle)
STEP_SETTLE_SECONDS = 0.25


@contextlib.contextmanager
def op_timers():
    """Within this block every op's forward and backward is timed; yields a Counter of
    seconds by (op class name, "forward" or "backward"). When an op's method calls
    another's (self-attention's calls scaled dot-product attention's), only the outer one
    counts, so the times add up to the step's time inside ops."""
    totals = collections.Counter()
    state = threading.local()

    def timed(kind, method):
        def run(self, *args):
            if getattr(state, "inside", False):
                return method(self, *args)
            state.inside, start = True, time.perf_counter()
            try:
                return method(self, *args)
            finally:
                op = getattr(type(self), "speeds_up", type(self))  # a fast path counts as its op
                totals[op.__name__, kind] += time.perf_counter() - start
                state.inside = False
        return run

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    originals = [(cls, kind, vars(cls)[kind]) for cls in set(subclasses(Function))
                 for kind in ("forward", "backward") if kind in vars(cls)]
    for cls, kind, method in originals:
        setattr(cls, kind, timed(kind, method))
    try:
        yield totals
    finally:
        for cls, kind, method in originals:
            setattr(cls, kind, method)


def run_cli(main) -> None:
    backend.keep_host_memory()  # as the examples train: freed host memory kept for the next step
    try:
        main()
    except TinygradNLPError as e:  # e.g. --device cuda without CuPy: one line, no traceback
        sys.exit(f"error: {e}")
