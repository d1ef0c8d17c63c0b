"""What the examples' command lines share: their options table, the host memory kept for
training, output from the first process only, and bad input or a failure ending the run
with one line and exit status 1, on every process of a data-parallel job.

    def main(argv=None):
        return cli.run(lambda: train(parse_args(argv)))
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from . import backend, distributed
from .errors import DataError, TinygradNLPError


def run(job) -> int:
    """Run ``job()`` and return the exit status: 0, or 1 after printing a documented
    error (``TinygradNLPError``, ``OSError``) as one line; under an MPI launcher the
    failing process ends every process of the job. Prints the time taken on rank 0."""
    started = time.time()
    backend.keep_host_memory()  # one step's freed activations serve the next (backend/memory.py)
    try:
        with _quiet_unless_first_process(), backend.kernels.reference_ops(backend.kernels.in_reference_mode()):
            job()  # (--reference switches the mode while the job runs; it is restored after)
    except (TinygradNLPError, OSError) as error:
        comm = distributed.current()
        if comm.world_size > 1:
            comm.abort(f"error: {error}")  # ends every process of the job, not just this one
        print(f"error: {error}", file=sys.stderr)
        return 1
    if distributed.launcher_rank() == 0:
        print(f"done in {time.time() - started:.0f} s")
    return 0


@contextlib.contextmanager
def _quiet_unless_first_process():
    """Under an MPI launcher, only rank 0 prints what a run reports (errors still show)."""
    if distributed.launcher_rank() == 0:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


TRAINING_OPTIONS = [  # what every training example takes, after its own options
    ("--device", ["cpu", "cuda"], "cpu", "cpu (NumPy) or cuda (CuPy)"),
    ("--threads", int, None, "replicas training at once in threads, each on its share of the batch (default: "
                             f"on the CPU one per core, {backend.default_threads('cpu')} here, shared with this "
                             "machine's other MPI processes; any count gives the same losses, to float rounding)"),
    ("--seed", 0, "seed for the data split, batches, initialisation and dropout"),
    ("--reference", False, "run every op on its textbook code alone (the ops/ files; no fast path of kernels/): "
                           "slower, the same losses to float32 rounding; TINYGRAD_NLP_REFERENCE=1 does the same"),
    ("--no-progress", False, "log lines instead of a progress bar"),
    ("--graph", None, "draw the backward graph of one training step of a one-layer model to this .svg, .png or "
                      ".dot file, print what it saves, and exit"),
]


class _ReferenceOps(argparse.Action):
    """``--reference``: every op runs its textbook code from here on (``run`` restores the mode)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        backend.kernels.set_reference_mode(True)


def parser(description: str, options) -> argparse.ArgumentParser:
    """An argument parser from a table of ``(flag, default, help)`` rows: the type is the
    default's (a bool default of False is a switch; ``(flag, choices, default, help)`` rows
    choose, ``(flag, type, None, help)`` rows take that type), and the help ends with a default
    that is not None."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for row in options:
        flag, choices, default, text = row if len(row) == 4 else (row[0], None, *row[1:])
        kind = None if default is None else type(default)
        if isinstance(choices, type):
            kind, choices = choices, None
        if flag == "--reference":
            p.add_argument(flag, action=_ReferenceOps, nargs=0, default=False, help=text)
        elif default is False:
            p.add_argument(flag, action="store_true", help=text)
        elif default is True:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=True, help=text + " (default on)")
        else:
            shown = "" if default is None else f" ({default})"
            p.add_argument(flag, type=kind, choices=choices, default=default, help=text + shown)
    return p


def require_positive(args, *names) -> None:
    """A DataError naming the first option among ``names`` (attributes of ``args``) that
    is not positive."""
    for name in names:
        if getattr(args, name) <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


__all__ = ["TRAINING_OPTIONS", "run", "parser", "require_positive"]
