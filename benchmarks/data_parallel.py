"""Data-parallel costs, measured and modelled.

    python benchmarks/data_parallel.py            # starts itself under mpirun with 2 processes

Measures, with 2 MPI processes on this machine: the all-reduce time of float32 buffers
from 4 KiB to 64 MiB (fitted to the ring model t = 2(p-1) alpha + 2(p-1)/p * bytes / B),
and for each tutorial's model the step split into compute (forward + backward of each
process's half of the global batch, and Adam) and communication (the weighted all-reduce
of the flat gradient buffer). Then predicts step time and efficiency for 2-64 machines on
10 and 100 Gbit/s networks and 2-8 GPUs on NVLink (assumed constants, printed).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from train_step import CONFIGS, build, inputs

from tinygrad_nlp import distributed
from tinygrad_nlp.distributed import all_reduce_gradients, broadcast_parameters
from tinygrad_nlp.nn import share
from tinygrad_nlp.optim import Adam

NETWORKS = {  # (alpha: seconds per message step, B: bytes per second per link), assumed
    "10 Gbit/s Ethernet": (30e-6, 1.25e9),
    "100 Gbit/s InfiniBand": (5e-6, 12.5e9),
    "NVLink (H100, NCCL)": (10e-6, 150e9),
}


def ring_time(p, nbytes, alpha, bandwidth):
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / bandwidth if p > 1 else 0.0


def time_all_reduce(comm, nbytes, repeats=15):
    from mpi4py import MPI
    buffer = np.ones(nbytes // 4, dtype=np.float32)
    comm.comm.Barrier()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        comm.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_step(comm, name, repeats):
    c = CONFIGS[name]
    model = build(c, "cpu", name)[0]
    params = model.parameters()
    optimizer = Adam(params, lr=1e-4)
    broadcast_parameters(comm, params)
    ids, targets, mask, labels = inputs(c)
    mine = share(len(ids), comm.world_size, comm.rank)

    def loss():
        loss = model.loss(ids[mine], targets[mine]) if name == "mlm" else model.loss(ids[mine], mask[mine], labels[mine])
        return loss, loss.count

    compute, communicate = [], []
    for i in range(repeats + 1):
        comm.comm.Barrier()
        start = time.perf_counter()
        optimizer.zero_grad()
        value, count = loss()
        value.backward()
        middle = time.perf_counter()
        all_reduce_gradients(comm, params, count)
        end = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        if i:  # the first step warms up
            compute.append((middle - start) + (done - end))
            communicate.append(end - middle)
    grad_bytes = sum(b.grad.nbytes for b in optimizer.buffers)
    return {"compute_s": float(np.median(compute)), "all_reduce_s": float(np.median(communicate)),
            "gradient_bytes": grad_bytes}


def measure(repeats):
    comm = distributed.init("cpu")
    sizes = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
    results = {"processes": comm.world_size, "all_reduce": {n: time_all_reduce(comm, n) for n in sizes}}
    for name in ("mlm", "classifier"):
        results[name] = time_step(comm, name, repeats)
    if comm.is_root:
        print(json.dumps(results))


def report(results):
    p = results["processes"]
    sizes = np.array([int(k) for k in results["all_reduce"]], dtype=float)
    times = np.array(list(results["all_reduce"].values()))
    # fit t = 2(p-1) alpha + 2(p-1)/p * bytes / B by least squares on relative errors
    # (plain least squares lets the largest size decide alone)
    design = np.stack([np.full_like(sizes, 2 * (p - 1)), 2 * (p - 1) / p * sizes], axis=1)
    (alpha, inverse_bandwidth), *_ = np.linalg.lstsq(design / times[:, None], np.ones_like(times), rcond=None)
    print(f"all-reduce, {p} processes on this machine (shared memory):")
    for n, t in zip(sizes, times):
        print(f"  {n / 2 ** 20:8.3f} MiB  {t * 1e3:8.3f} ms")
    print(f"  ring-model fit: alpha = {alpha * 1e6:.1f} us, B = {1 / inverse_bandwidth / 1e9:.2f} GB/s")
    for name in ("mlm", "classifier"):
        r = results[name]
        one = r["compute_s"] * p  # the whole global batch on one process (compute scales with rows)
        print(f"\n{name}: gradient buffer {r['gradient_bytes'] / 2 ** 20:.1f} MiB; with {p} processes a step is "
              f"{r['compute_s'] * 1e3:.0f} ms compute + {r['all_reduce_s'] * 1e3:.1f} ms all-reduce "
              f"({100 * r['all_reduce_s'] / (r['compute_s'] + r['all_reduce_s']):.1f}% communication)")
        print(f"  predicted step time (ms) and efficiency T1 / (p Tp), global batch fixed, compute {one * 1e3:.0f} ms "
              "on one process:")
        for network, (a, b) in NETWORKS.items():
            counts = (2, 4, 8) if "NVLink" in network else (2, 4, 8, 16, 32, 64)
            cells = []
            for q in counts:
                step = one / q + ring_time(q, r["gradient_bytes"], a, b)
                cells.append(f"{q}: {step * 1e3:.0f} ms ({100 * one / (q * step):.0f}%)")
            print(f"    {network:24} " + ", ".join(cells))


def main():
    repeats = 5
    if os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE"):
        measure(repeats)
        return
    if not shutil.which("mpirun"):
        sys.exit("error: mpirun is not installed (apt install openmpi-bin; pip install mpi4py)")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(["mpirun", "-n", "2", "--oversubscribe", sys.executable, "-m", "mpi4py",
                          os.path.abspath(__file__)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"error: the 2-process run failed: {out.stderr.strip().splitlines()[-1:]}")
    results = json.loads(out.stdout.strip().splitlines()[-1])
    results["all_reduce"] = {int(k): v for k, v in results["all_reduce"].items()}
    report(results)


if __name__ == "__main__":
    main()
