"""The guide's numbers and check commands run and say what the guide says."""
import os
import subprocess
import sys

import pytest

from tests.helpers import load_docs_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_worked_numbers_match_the_code():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "worked_numbers.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_graph_pictures_and_saved_table_are_current():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "graphs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for kind in ("pre_norm", "post_norm"):
        assert os.path.getsize(os.path.join(ROOT, "docs", "images", f"encoder_layer_{kind}.svg")) > 0


@pytest.mark.parametrize("name", ["embedding", "linear", "linear_gelu", "softmax", "cross_entropy", "gelu",
                                  "linear_cross_entropy", "layer_norm", "dropout", "attention", "attention_causal",
                                  "self_attention", "encoder_pre_norm", "encoder_post_norm", "rms_norm",
                                  "rotary_embedding", "silu", "swiglu", "grouped_query_attention"])
def test_check_commands_print_what_the_guide_says(name, capsys):
    status = load_docs_script("check").main([name])  # in-process: a subprocess each would cost an import
    out = capsys.readouterr().out
    expected = f"{name}: random-direction and element-wise gradchecks passed; max relative error < 1e-6 -> ok"
    assert status == 0 and out.strip() == expected, out
    guide = open(os.path.join(ROOT, "docs", "backward.md"), encoding="utf-8").read()
    assert f"python docs/check.py {name}" in guide or name.startswith("encoder")


@pytest.mark.parametrize("script", ["train_step.py", "ops.py", "scaling.py"])
def test_benchmarks_have_help_and_refuse_an_unusable_device_in_one_line(script):
    path = os.path.join(ROOT, "benchmarks", script)
    result = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--device" in result.stdout
    from tinygrad_nlp import backend
    if not backend.cuda_available():
        result = subprocess.run([sys.executable, path, "--device", "cuda"], capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0 and "CuPy" in result.stderr


def test_the_step_profile_accounts_for_the_step_op_by_op():
    script = os.path.join(ROOT, "benchmarks", "train_step.py")
    result = subprocess.run([sys.executable, script, "--config", "mlm", "--profile", "--repeats", "1", "--warmup", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    total = float(lines[0].rsplit(" ", 1)[1])
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert {"Linear", "LinearCrossEntropy", "PackedSelfAttention", "Dropout", "LayerNorm", "outside"} <= set(rows)
    ops = sum(float(r[1]) + float(r[2]) for name, r in rows.items() if name != "outside")
    outside = float(rows["outside"][-2])
    assert 0 < outside < total and abs(ops + outside - total) < 0.5  # the rows add up to the step
    assert sum(float(r[-1].rstrip("%")) for r in rows.values()) == pytest.approx(100, abs=1)


def test_gpu_report_lists_its_commands_and_refuses_without_a_gpu(tmp_path):
    script = os.path.join(ROOT, "benchmarks", "gpu_report.py")
    dry = subprocess.run([sys.executable, script, "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0 and "-m gpu" in dry.stdout and "train_step.py --config mlm --device cuda" in dry.stdout
    from tinygrad_nlp import backend
    if backend.cuda_available():
        pytest.skip("a GPU is present: the report would run")
    run = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.strip().startswith("error: no GPU") and len(run.stderr.splitlines()) == 1


def test_page_fault_benchmark_shows_the_kept_host_memory_at_work():
    """The tutorial MLM step, after warm-up, takes almost no page faults with host memory
    kept (it took ~57,000 per step without)."""
    from tinygrad_nlp import backend
    script = os.path.join(ROOT, "benchmarks", "page_faults.py")
    result = subprocess.run([sys.executable, script, "--config", "mlm", "--repeats", "2"], capture_output=True,
                            text=True, check=True)
    faults = int(result.stdout.split(" ms, ")[1].split()[0].replace(",", ""))
    if backend.keep_host_memory():
        assert "host memory kept" in result.stdout and faults < 2000, result.stdout
