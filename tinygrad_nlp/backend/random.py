"""Random numbers: the seeded generator of parameter initialisation, the dropout masks
drawn per example, and their state for exact resumes.

Dropout is counter-based (as JAX's keys and the Philox generator of cuRAND): the bits of
a mask are a pure function of the run's seed, which draw of the run it is, and each
element's place in the *global* batch, so an example gets the same mask whichever worker
computes it. Draw ``d`` (the d-th mask drawn since ``manual_seed``) is a stream of 16-bit
numbers laid out over the whole batch, one example after another; a worker whose rows
are the global batch's examples ``first, first + 1, ...`` reads the stream from
``first * (numbers per example)`` on. One process with one replica, N thread replicas,
N MPI processes on one host or several, and a run resumed from a checkpoint all draw
the same masks for the same batch: only the order of floating-point sums differs.

Inside a data-parallel replica (``examples_from``) the draws are counted on the replica's
thread, from the run's count when the step began; everywhere else on the run's count.

``manual_seed`` seeds everything. ``get_rng_state`` / ``set_rng_state`` save and restore
the generator of initialisation and the count of dropout draws.
"""
from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

from ..errors import CheckpointError

_rng_cpu = np.random.default_rng()
_dropout_start = np.random.PCG64(np.random.SeedSequence()).state  # the dropout streams' origin
_philox_key = tuple(int(w) for w in np.random.SeedSequence().generate_state(2))
_draws = 0  # dropout masks drawn in this run (outside replicas; each replica counts its own from it)
_replica = threading.local()  # a replica's place (its first example, its draw count) and a generator to read with


def manual_seed(seed: int) -> None:
    """Seed parameter initialisation and dropout on every backend."""
    global _rng_cpu, _dropout_start, _philox_key, _draws
    _rng_cpu = np.random.default_rng(int(seed))
    _dropout_start = np.random.PCG64(np.random.SeedSequence([int(seed), 1])).state
    _philox_key = tuple(int(w) for w in np.random.SeedSequence([int(seed), 2]).generate_state(2))
    _draws = 0


def rng(xp=np) -> np.random.Generator:
    """The seeded NumPy generator of parameter initialisation (always on the host)."""
    return _rng_cpu


# -- dropout: draws numbered by the run, laid out by the global batch ------------------
class _ReplicaDraws:
    def __init__(self, first_example: int, first_draw: int):
        self.first_example, self.next_draw = int(first_example), int(first_draw)


@contextlib.contextmanager
def examples_from(first_example: int, first_draw: int | None = None):
    """Within this block, on this thread, dropout masks are drawn for a worker whose rows
    are the global batch's examples from ``first_example`` on, their draws numbered from
    ``first_draw`` (default: the run's count). Yields the replica's place; its
    ``next_draw`` after the block is the count the run goes on from."""
    place = _ReplicaDraws(first_example, draws_made() if first_draw is None else first_draw)
    previous, _replica.place = getattr(_replica, "place", None), place
    try:
        yield place
    finally:
        _replica.place = previous


def draws_made() -> int:
    """How many dropout masks the run has drawn (the number the next draw gets)."""
    return _draws


def set_draws_made(count: int) -> None:
    """Go on from ``count`` draws (after the replicas of a step drew theirs)."""
    global _draws
    _draws = int(count)


def next_draw() -> tuple[int, int]:
    """(the number of the draw about to be made, the global index of this worker's first
    example), counting the draw."""
    global _draws
    place = getattr(_replica, "place", None)
    if place is None:
        _draws += 1
        return _draws - 1, 0
    place.next_draw += 1
    return place.next_draw - 1, place.first_example


def draw_bits(draw: int, start: int, count: int) -> np.ndarray:
    """Numbers ``start .. start + count - 1`` of draw ``draw``'s stream of uniform 16-bit
    integers: draw d is the stretch of one PCG64 stream from 64-bit output d * 2^64 on
    (2^64 outputs, 2^66 16-bit numbers, each draw's room, never filled), read by
    ``advance``, so any stretch costs a jump, not the numbers before it."""
    generator = getattr(_replica, "generator", None)
    if generator is None:  # one per thread, moved to each stretch's start (making one costs more)
        generator = _replica.generator = np.random.PCG64(0)
    generator.state = _dropout_start
    generator.advance((int(draw) << 64) + start // 4)  # four 16-bit numbers per 64-bit output
    skip = start % 4
    raw = generator.random_raw(-(-(skip + count) // 4))
    return raw.view(np.uint16)[skip:skip + count]


def keep_mask(xp, shape, p: float):
    """A boolean dropout mask of ``shape``, True (kept) with probability 1 - p, whose
    first axis is this worker's examples in order: the next draw of the run, read at
    this worker's place in the global batch (``first * prod(shape[1:])``), so each
    example's mask is the one it gets on any number of workers. It compares 16-bit
    numbers with round(p * 2^16): the drop rate is p to within 2^-17.

    The numbers are drawn on the host, on every device: a CuPy array gets the CPU's
    mask. (The fused CUDA dropout kernel draws its own, per example too: ``philox_place``.)"""
    draw, first = next_draw()
    threshold = int(round(p * 65536))
    if threshold >= 65536:
        keep = np.zeros(shape, dtype=bool)
    else:
        per_example = math.prod(shape[1:])
        keep = (draw_bits(draw, first * per_example, math.prod(shape)) >= threshold).reshape(shape)
    return keep if xp is np else xp.asarray(keep)


def philox_place(per_example: int) -> tuple:
    """Where the fused CUDA kernels' counter-based generator (kernels/cuda/philox.cuh)
    draws the next mask, whose examples have ``per_example`` elements each: (key word 0,
    key word 1, the draw's number, the element number of this worker's first element).
    The key comes from the seed; element i of the global batch is word i mod 4 of the
    Philox call at counter (i / 4, draw), so each example's mask is the same on any
    number of workers, as ``keep_mask``'s (other numbers: another generator)."""
    draw, first = next_draw()
    return _philox_key + (draw, first * int(per_example))


def get_rng_state() -> dict:
    """Everything the draws need to continue exactly (a plain dict, for checkpoints): the
    initialisation generator's state, the dropout streams' origin and key and the count
    of dropout draws."""
    return {"cpu": _rng_cpu.bit_generator.state, "dropout_start": _dropout_start, "philox_key": list(_philox_key),
            "draws": _draws}


def set_rng_state(state: dict) -> None:
    """Continue from a state ``get_rng_state`` returned."""
    global _dropout_start, _philox_key, _draws
    if not isinstance(state, dict) or "draws" not in state:
        raise CheckpointError("the random state has no count of dropout draws: it was saved before dropout was "
                              "drawn per example; resume is not possible, start the run again")
    _rng_cpu.bit_generator.state = state["cpu"]
    _dropout_start = state["dropout_start"]
    _philox_key, _draws = tuple(int(w) for w in state["philox_key"]), int(state["draws"])


__all__ = ["manual_seed", "rng", "examples_from", "draws_made", "set_draws_made", "next_draw", "draw_bits",
           "keep_mask", "philox_place", "get_rng_state", "set_rng_state"]
