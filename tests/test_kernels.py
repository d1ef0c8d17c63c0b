"""Every CUDA kernel source beside an op compiles with nvcc (to PTX), so a typo fails
here rather than on a lent GPU. Skipped with one line where nvcc is not installed."""
import pathlib
import shutil
import subprocess

import pytest

from tinygrad_nlp import backend

KERNELS = sorted((pathlib.Path(__file__).resolve().parents[1] / "tinygrad_nlp").rglob("*.cu"))


def test_there_are_kernel_sources():
    assert KERNELS, "no .cu files found beside the ops"


@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_with_nvcc(source, tmp_path):
    nvcc = shutil.which("nvcc") or (shutil.which("/usr/local/cuda/bin/nvcc"))
    if not nvcc:
        pytest.skip("nvcc is not installed: CUDA sources not compiled")
    code = tmp_path / source.name  # the text CuPy compiles: shared headers written in
    code.write_text(backend.kernel_code(source))
    result = subprocess.run([nvcc, "--ptx", "-arch=sm_90", "-o", str(tmp_path / "out.ptx"), str(code)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "docs/backward.md" in source.read_text(), f"{source.name} should name the guide section it computes"


def test_kernel_code_writes_in_the_headers_beside_it(tmp_path):
    (tmp_path / "shared.cuh").write_text("#pragma once\n__device__ int twice(int a) { return 2 * a; }\n")
    (tmp_path / "op.cu").write_text('// op\n#include "shared.cuh"\n#include <cstdint>\nint use = 1;\n')
    code = backend.kernel_code(tmp_path / "op.cu")
    assert code == "// op\n__device__ int twice(int a) { return 2 * a; }\n#include <cstdint>\nint use = 1;\n"
