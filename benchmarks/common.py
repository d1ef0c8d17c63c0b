"""What the benchmark scripts share: timing contenders in alternation, and the
command-line entry that turns a documented error into one line and exit status 1."""
from __future__ import annotations

import sys
import time

from tinygrad_nlp import TinygradNLPError


def time_alternating(contenders, repeats, warmup):
    """{name: [seconds per run]}: every contender runs ``warmup`` times untimed, then
    once per round for ``repeats`` rounds, so drift in machine load hits all alike."""
    for run in contenders.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def run_cli(main) -> None:
    try:
        main()
    except TinygradNLPError as e:  # e.g. --device cuda without CuPy: one line, no traceback
        sys.exit(f"error: {e}")
