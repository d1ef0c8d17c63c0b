"""Page faults and time of our training step alone, to see what keeping freed host memory
(``backend.keep_host_memory``, which every benchmark and example calls before training) is worth:

    python benchmarks/page_faults.py --config mlm
    TINYGRAD_NLP_KEEP_HOST_MEMORY=0 python benchmarks/page_faults.py --config mlm

Minor page faults are counted with getrusage (Linux, macOS).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from common import run_cli
from train_step import CONFIGS, ours

from tinygrad_nlp import backend


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="mlm", help="which tutorial's model (mlm)")
    p.add_argument("--repeats", type=int, default=7, help="timed steps after 3 warm-up steps (7)")
    args = p.parse_args(argv)
    step = ours(CONFIGS[args.config], "cpu", args.config)
    for _ in range(3):
        step()
    times, faults = [], []
    for _ in range(args.repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(f"{args.config} step, host memory {'kept' if backend.host_memory_kept() else 'left to the C library'}: "
          f"median {1000 * np.median(times):.1f} ms, {np.median(faults):,.0f} minor page faults per step")
    return 0


if __name__ == "__main__":
    run_cli(main)
