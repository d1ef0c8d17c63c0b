"""Every CUDA kernel source (kernels/cuda) compiles with nvcc (to PTX), so a typo fails
here rather than on a lent GPU. Skipped with one line where nvcc is not installed."""
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import philox4x32_10, philox_keep_mask
from tinygrad_nlp import backend
from tinygrad_nlp.kernels.cuda.bias_activation import KIND
from tinygrad_nlp.ops.activations import ACTIVATIONS

KERNELS = sorted((pathlib.Path(__file__).resolve().parents[1] / "tinygrad_nlp").rglob("*.cu"))


def test_there_are_kernel_sources():
    assert KERNELS, "no .cu files found in kernels/cuda"


@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_with_nvcc(source, tmp_path):
    nvcc = shutil.which("nvcc") or (shutil.which("/usr/local/cuda/bin/nvcc"))
    if not nvcc:
        pytest.skip("nvcc is not installed: CUDA sources not compiled")
    code = tmp_path / source.name  # the text CuPy compiles: shared headers written in
    code.write_text(backend.kernels.kernel_code(source))
    result = subprocess.run([nvcc, "--ptx", "-arch=sm_90", "-o", str(tmp_path / "out.ptx"), str(code)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "docs/backward.md" in source.read_text(), f"{source.name} should name the guide section it computes"


def test_kernel_code_writes_in_the_headers_beside_it(tmp_path):
    (tmp_path / "shared.cuh").write_text("#pragma once\n__device__ int twice(int a) { return 2 * a; }\n")
    (tmp_path / "op.cu").write_text('// op\n#include "shared.cuh"\n#include <cstdint>\nint use = 1;\n')
    code = backend.kernels.kernel_code(tmp_path / "op.cu")
    assert code == "// op\n__device__ int twice(int a) { return 2 * a; }\n#include <cstdint>\nint use = 1;\n"


KNOWN_ANSWERS = [  # Random123's kat_vectors for Philox4x32-10: counter, key, output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_the_numpy_philox_reference_gives_the_known_answers(counter, key, expected):
    words = philox4x32_10(np.array([counter], dtype=np.uint32), key)
    assert tuple(int(w) for w in words[0]) == expected


def test_philox_keep_mask_drops_at_the_rate_asked():
    keep = philox_keep_mask(400_000, 0.1, 12345, 678, draw=3, first=10)
    assert abs(1 - keep.mean() - 0.1) < 0.003  # 6 standard deviations
    for on in (1, 2, 3, 4, 41):  # a worker whose elements start later reads the same mask there
        np.testing.assert_array_equal(philox_keep_mask(400_000 - on, 0.1, 12345, 678, draw=3, first=10 + on), keep[on:])
    assert abs((keep & philox_keep_mask(400_000, 0.1, 12345, 678, draw=4, first=10)).mean() - 0.81) < 0.003


def test_the_kernels_philox_header_runs_on_the_host_and_matches_the_reference(tmp_path):
    """kernels/cuda/philox.cuh compiled by nvcc into a host program: the known answers, and the
    words of 64 counters near a 32-bit carry, against the NumPy reference."""
    counters = [c for c, _, _ in KNOWN_ANSWERS] + [((2 ** 32 - 32 + i) & 0xFFFFFFFF, (2 ** 32 - 32 + i) >> 32, 7, 0)
                                                    for i in range(64)]
    keys = [k for _, k, _ in KNOWN_ANSWERS] + [(0x01234567, 0x89ABCDEF)] * 64
    calls = "\n".join(f"    show(philox4x32_10({c[0]}u, {c[1]}u, {c[2]}u, {c[3]}u, {k[0]}u, {k[1]}u));"
                      for c, k in zip(counters, keys))
    program = build_host_program(tmp_path, "philox_host", (
        '#include <cstdio>\n#include "philox.cuh"\n'
        'void show(Philox4 r) { printf("%u %u %u %u\\n", r.word[0], r.word[1], r.word[2], r.word[3]); }\n'
        f"int main() {{\n{calls}\n}}\n"))
    ran = subprocess.run([str(program)], capture_output=True, text=True, check=True)
    words = np.array([[int(w) for w in line.split()] for line in ran.stdout.splitlines()], dtype=np.uint32)
    assert [tuple(int(w) for w in row) for row in words[:3]] == [e for _, _, e in KNOWN_ANSWERS]
    expected = np.concatenate([philox4x32_10(np.array([c], dtype=np.uint32), k) for c, k in zip(counters, keys)])
    np.testing.assert_array_equal(words, expected)


def build_host_program(tmp_path, name, text):
    """``text`` compiled by nvcc into a host program (the kernels/cuda folder on the include
    path) and its path; skipped with one line without nvcc or a host C++ compiler."""
    nvcc = shutil.which("nvcc") or shutil.which("/usr/local/cuda/bin/nvcc")
    if not nvcc or not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip(f"nvcc or a host C++ compiler is not installed: {name} not run on the host")
    program = tmp_path / f"{name}.cu"
    program.write_text(text)
    ops = pathlib.Path(__file__).resolve().parents[1] / "tinygrad_nlp" / "kernels" / "cuda"
    built = subprocess.run([nvcc, "-I", str(ops), "-o", str(tmp_path / name), str(program)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return tmp_path / name


def test_the_bias_activation_kernels_math_runs_on_the_host_and_matches_the_numpy_path(tmp_path):
    """activation() and slope() of kernels/cuda/bias_activation.cu, compiled for the host, in
    float64 and float32, against ACTIVATIONS' forward and backward (g = 1)."""
    xs = np.concatenate([np.linspace(-6, 6, 49), [0.0, 1e-3, -1e-3, 9.0, -9.0]])
    values = ", ".join(repr(float(x)) for x in xs)
    program = build_host_program(tmp_path, "activation_host", (
        '#include <cstdio>\n#include "bias_activation.cu"\n'
        f"int main() {{\n    const double xs[] = {{{values}}};\n"
        "    for (int kind = 1; kind <= 3; ++kind) for (double x : xs)\n"
        '        printf("%.17g %.17g %.9g %.9g\\n", activation(x, kind), slope(x, kind),\n'
        "               activation((float)x, kind), slope((float)x, kind));\n}\n"))
    ran = subprocess.run([str(program)], capture_output=True, text=True, check=True)
    rows = np.array([[float(v) for v in line.split()] for line in ran.stdout.splitlines()]).reshape(3, xs.size, 4)
    for kind, name in enumerate(sorted(KIND, key=KIND.get)):
        activation = ACTIVATIONS[name]
        for dtype, columns, tol in ((np.float64, (0, 1), 1e-13), (np.float32, (2, 3), 2e-6)):
            x = xs.astype(dtype)
            y, saved = activation.forward(x)
            slope = activation.backward(np.ones_like(x), *saved)
            np.testing.assert_allclose(rows[kind][:, columns[0]], y, rtol=tol, atol=tol, err_msg=f"{name} {dtype}")
            np.testing.assert_allclose(rows[kind][:, columns[1]], slope, rtol=tol, atol=tol, err_msg=f"{name}' {dtype}")


@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_the_guide_section_a_kernel_names_exists(source):
    guide = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "backward.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
               for line in guide.splitlines() if line.startswith("## ")}
    named = re.findall(r"docs/backward\.md#([a-z0-9-]+)", source.read_text(encoding="utf-8"))
    assert named and set(named) <= anchors, f"{source.name} names {named}; the guide has {sorted(anchors)}"
