"""What the benchmark scripts share: timing contenders in alternation, timing each op of
a step, the roofline (matrix work at the measured peak, least traffic at the measured
bandwidth), a step's memory, and the command-line entry that turns a documented error
into one line and exit status 1."""
from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time

import numpy as np

from tinygrad_nlp import TinygradNLPError, backend, graph
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


def flops_per_step(c, scored):
    """Matrix-multiply FLOPs of forward + backward (3x forward). With ``kv_heads`` (Llama)
    the key and value projections are kv_heads / heads as wide and the MLP has three
    matrices (SwiGLU)."""
    n = c["batch"] * c["seq"]
    if "kv_heads" in c:
        projections = c["d"] * (2 + 2 * c["kv_heads"] / c["heads"]) * c["d"] + 3 * c["d"] * c["ff"]
    else:
        projections = c["d"] * 3 * c["d"] + c["d"] * c["d"] + 2 * c["d"] * c["ff"]
    per_layer = 2 * n * projections + 4 * n * c["seq"] * c["d"]
    head = 2 * scored * c["d"] * c["classes"]
    return 3 * (c["layers"] * per_layer + head)


PEAK = "(matmul 2048^2, for the peak)"


def matmul_probe(xp, device):
    """A 2048 x 2048 float32 product, timed among the contenders every round so the
    peak (its best time) is measured under the same machine load as they are."""
    a = xp.asarray(np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32))

    def run():
        a @ a
        if device == "cuda":
            xp.cuda.Device().synchronize()
    return run


def memory_bandwidth(xp, device):
    """Bytes per second of copying a 256 MiB array (read + write), best of five."""
    a = xp.ones(2 ** 26, dtype=np.float32)
    b = xp.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        b[...] = a
        if device == "cuda":
            xp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best


def _proc_status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(field)


def step_memory(step, device, steps, ours=True, jax=False) -> float:
    """A step's memory (MiB): the peak during ``steps`` calls of ``step`` minus what was
    held before them, which covers gradients, optimizer state and activations (run it in
    a fresh process). On the CPU from Linux's /proc (the resident peak, VmHWM, reset
    first); on the GPU from CuPy's pool (ours) or PyTorch's allocator (``jax``: JAX
    preallocates its pool, so there is no per-step figure)."""
    if device == "cuda":
        if ours:
            pool = backend.xp_for("cuda").get_default_memory_pool()
            base = pool.used_bytes()
            for _ in range(steps):
                step()
            return (pool.total_bytes() - base) / 2 ** 20
        if jax:
            return float("nan")
        import torch
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            step()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    base = _proc_status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident size
    for _ in range(steps):
        step()
    return _proc_status_mib("VmHWM") - base


def least_traffic(loss, parameters) -> tuple:
    """(bytes, saved bytes, parameter bytes): the least memory traffic of one training step,
    each array saved for the backward written once and read once (``graph.saved_memory`` of
    the step's graph), and per parameter element the forward's and backward's reads, the
    gradient's write and Adam's four reads and three writes (10 accesses)."""
    saved = graph.saved_memory(loss).total_bytes
    parameter_bytes = sum(p.data.nbytes for p in parameters)
    return 2 * saved + 10 * parameter_bytes, saved, parameter_bytes


def roofline(flops, peak_gflops, traffic, bandwidth, step_seconds) -> str:
    """One line: the step's matrix work at the measured product peak, its least traffic
    (``least_traffic``) at the measured bandwidth, and the step's time against both."""
    total, saved, parameter_bytes = traffic
    at_peak, at_bandwidth = flops / peak_gflops / 1e9, total / bandwidth
    return (f"roofline: {flops / 1e9:.2f} GFLOP at {peak_gflops:.0f} GFLOP/s = {1000 * at_peak:.1f} ms; "
            f"{total / 2 ** 20:.0f} MiB least traffic (saved for backward {saved / 2 ** 20:.0f} MiB x 2, "
            f"parameters {parameter_bytes / 2 ** 20:.0f} MiB x 10) at {bandwidth / 1e9:.1f} GB/s = "
            f"{1000 * at_bandwidth:.1f} ms; our step takes {step_seconds / (at_peak + at_bandwidth):.2f}x their sum "
            f"and {step_seconds / max(at_peak, at_bandwidth):.2f}x the larger")


def run_cli(main) -> None:
    backend.keep_host_memory()  # as the examples train: freed host memory kept for the next step
    try:
        main()
    except TinygradNLPError as e:  # e.g. --device cuda without CuPy: one line, no traceback
        sys.exit(f"error: {e}")
