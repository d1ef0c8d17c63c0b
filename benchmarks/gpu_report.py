"""Verify and measure everything on a GPU with one command (for a lent H100/H200):

    pip install --no-deps --no-build-isolation -e .     # the lent machines have no network
    python benchmarks/gpu_report.py --out gpu_report     # about 6 minutes

Runs, each with its own time limit and its output kept: the `gpu`-marked tests (every op's
forward and gradients against NumPy in float32 and float64, both models against the CPU,
an MLM run reaching the CPU's loss, checkpoints GPU -> CPU -> GPU), both examples with
--device cuda, benchmarks/ops.py and benchmarks/train_step.py --device cuda --torch --memory
for both tutorial models, the MLM step with every kernel on and on the textbook ops alone
(reference mode), and (when Nsight Systems' nsys is there) the CUDA kernel launches
of one training step. Writes DIR/report.json and DIR/report.md (a section ready for
benchmarks/RESULTS.md) with the device, driver, CUDA, CuPy and PyTorch versions.
--dry-run prints the commands without running them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def steps(out):
    """(name, command, seconds allowed) of every part of the report."""
    py = sys.executable
    return [
        ("gpu tests", [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", os.path.join(ROOT, "tests")], 150),
        ("mlm example", [py, os.path.join(ROOT, "examples", "mlm.py"), "--device", "cuda", "--steps", "200",
                         "--no-progress", "--out", os.path.join(out, "mlm")], 60),
        ("classify example", [py, os.path.join(ROOT, "examples", "classify.py"), "--device", "cuda", "--epochs", "3",
                              "--plot", "pca", "--no-progress", "--out", os.path.join(out, "classify")], 60),
        ("ops benchmark", [py, os.path.join(HERE, "ops.py"), "--torch", "--repeats", "10",
                           "--json", os.path.join(out, "ops_cuda.json")], 60),
        ("mlm step", [py, os.path.join(HERE, "train_step.py"), "--config", "mlm", "--device", "cuda", "--torch",
                      "--memory", "--repeats", "20"], 60),
        ("classifier step", [py, os.path.join(HERE, "train_step.py"), "--config", "classifier", "--device", "cuda",
                             "--torch", "--memory", "--repeats", "20"], 60),
        # the fused kernels, switched on (the gpu tests above check them against the textbook ops)
        ("ops with fused kernels", ["env", "TINYGRAD_NLP_FUSED_KERNELS=all", py, os.path.join(HERE, "ops.py"),
                                    "--device", "cuda", "--only", "layer_norm", "--repeats", "10"], 20),
        ("mlm step with fused kernels", ["env", "TINYGRAD_NLP_FUSED_KERNELS=all", py,
                                         os.path.join(HERE, "train_step.py"), "--config", "mlm", "--device", "cuda",
                                         "--repeats", "20"], 40),
        # the textbook ops alone on CuPy (tinygrad_nlp.reference_ops)
        ("mlm step, reference mode", ["env", "TINYGRAD_NLP_REFERENCE=1", py, os.path.join(HERE, "train_step.py"),
                                      "--config", "mlm", "--device", "cuda", "--repeats", "20"], 40),
    ]


def versions():
    facts = {"python": sys.version.split()[0]}
    try:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        facts.update(device=props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
                     memory_gib=round(props["totalGlobalMem"] / 2 ** 30, 1),
                     driver=cupy.cuda.runtime.driverGetVersion(), cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                     cupy=cupy.__version__)
    except Exception as e:  # noqa: BLE001 - reported, not raised: the report says what it could not read
        facts["cupy_error"] = f"{type(e).__name__}: {e}"
    try:
        import torch
        facts.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    except ImportError:
        facts["torch"] = None
    import numpy
    facts["numpy"] = numpy.__version__
    return facts


def kernel_launches(out):
    """Kernel launches in one MLM training step, from nsys (None without it)."""
    nsys = shutil.which("nsys")
    if not nsys:
        return None, "nsys (Nsight Systems) is not installed: launches not counted"
    script = os.path.join(out, "one_step.py")
    with open(script, "w") as f:
        f.write("from train_step import CONFIGS, ours\nstep = ours(CONFIGS['mlm'], 'cuda', 'mlm')\n"
                + "for _ in range(3): step()\nimport cupy; cupy.cuda.runtime.profilerStart()\nstep()\n"
                + "cupy.cuda.runtime.profilerStop()\n")
    report = os.path.join(out, "one_step")
    run = subprocess.run([nsys, "profile", "--capture-range=cudaProfilerApi", "-o", report, "--force-overwrite=true",
                          "--stats=true", sys.executable, script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=HERE))
    launches, in_table = 0, False
    for line in run.stdout.splitlines():  # the "cuda_gpu_kern_sum" table: its third column counts instances
        if "cuda_gpu_kern_sum" in line:
            in_table = True
        elif in_table and not line.strip() and launches:
            break
        elif in_table and line.strip()[:1].isdigit() and len(line.split()) > 3:
            launches += int(line.split()[2].replace(",", ""))
    return launches or None, run.stdout[-4000:]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_report", help="output folder (gpu_report)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = p.parse_args(argv)
    plan = steps(args.out)
    if args.dry_run:
        for name, command, limit in plan:
            print(f"{name} ({limit} s): {' '.join(command)}")
        return 0
    from tinygrad_nlp import backend
    if not backend.cuda_available():
        print(f"error: no GPU: {backend.cuda_unavailable_reason()}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    report = {"versions": versions(), "steps": []}
    for name, command, limit in plan:
        started = time.time()
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=limit, cwd=ROOT)
            status, output = run.returncode, run.stdout + run.stderr
        except subprocess.TimeoutExpired as e:
            status, output = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
                else (e.stdout or "")
        seconds = time.time() - started
        with open(os.path.join(args.out, name.replace(" ", "_") + ".log"), "w") as f:
            f.write(output)
        report["steps"].append({"name": name, "command": " ".join(command), "status": status,
                                "seconds": round(seconds, 1), "tail": output[-3000:]})
        print(f"{name}: {'ok' if status == 0 else status} ({seconds:.0f} s)", flush=True)
    report["kernel_launches_per_mlm_step"], nsys_output = kernel_launches(args.out)
    report["nsys"] = nsys_output[-2000:]
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    v = report["versions"]
    lines = [f"## GPU: {v.get('device')} ({v.get('memory_gib')} GiB)", "",
             f"Driver {v.get('driver')}, CUDA runtime {v.get('cuda_runtime')}, CuPy {v.get('cupy')}, "
             f"PyTorch {v.get('torch')} (CUDA {v.get('torch_cuda')}), NumPy {v.get('numpy')}. "
             "`python benchmarks/gpu_report.py --out DIR`.", "",
             f"Kernel launches in one MLM step: {report['kernel_launches_per_mlm_step'] or 'not counted'}", ""]
    for step in report["steps"]:
        lines += [f"### {step['name']}: {'ok' if step['status'] == 0 else step['status']} ({step['seconds']} s)", "",
                  f"`{step['command'].replace(ROOT + os.sep, '')}`", "", "```", step["tail"][-1500:].strip(), "```", ""]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}/report.json and {args.out}/report.md")
    return 0 if all(s["status"] == 0 for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
