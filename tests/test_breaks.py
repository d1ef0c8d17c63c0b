"""docs/check.py: its exit status, --verbose, --default, and the break-it exercises of
docs/breaks.py, each caught by its check. Run in-process (check.py's ``main``)."""
import inspect
import os
import subprocess
import sys

import pytest

from tests.helpers import DOCS, load_docs_script
from tinygrad_nlp.backend.kernels import in_reference_mode

check = load_docs_script("check")
breaks = sys.modules["breaks"]  # the module check.py imported
FAMILIES = ("embedding", "linear", "softmax", "log_softmax", "cross_entropy", "layer_norm", "dropout", "attention",
            "rms_norm", "rotary_embedding", "swiglu", "grouped_query_attention")


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``python docs/check.py *argv``."""
    status = check.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("b", breaks.BREAKS, ids=lambda b: f"{b.check}-{b.name}")
def test_every_break_fails_its_check_and_points_to_the_textbook(capsys, b):
    right = vars(b.op)["backward"]
    status, out, _ = run(capsys, b.check, "--break", b.name)
    assert status == 1, out
    assert f"{b.check}: FAILED" in out and f"gradcheck({b.check}): input " in out and "<lambda>" not in out
    assert "analytic" in out and "numerical" in out and " elements off by more than " in out  # element-wise
    assert out.rstrip().endswith(f"({b.op.__name__}.backward)") and b.guide() in out and b.code() in out
    assert vars(b.op)["backward"] is right and not in_reference_mode()  # put back


def test_every_break_has_a_section_of_the_guide():
    headings = [line[3:].strip() for line in open(os.path.join(DOCS, "backward.md"), encoding="utf-8")
                if line.startswith("## ")]
    assert {b.section for b in breaks.BREAKS} <= set(headings)


def test_every_break_is_an_exercise_at_the_end_of_its_section():
    text = open(os.path.join(DOCS, "backward.md"), encoding="utf-8").read()
    sections = {part.split("\n", 1)[0].strip(): part for part in text.split("\n## ")[1:]}
    for b in breaks.BREAKS:
        exercise = sections[b.section].split("**Exercise: break it, see it, fix it.**")[-1]
        assert f"python docs/check.py {b.check} --break {b.name}" in exercise, (b.section, b.check, b.name)


def test_a_break_is_put_back_when_its_block_fails():
    b = breaks.BREAKS[0]
    right = vars(b.op)["backward"]
    with pytest.raises(RuntimeError), breaks.broken(b):
        assert vars(b.op)["backward"] is b.backward and in_reference_mode()
        raise RuntimeError
    assert vars(b.op)["backward"] is right and not in_reference_mode()


def test_break_list_has_one_per_op_family(capsys):
    status, out, _ = run(capsys, "--break", "list")
    listed = [line.split(None, 2) for line in out.splitlines()]
    assert status == 0 and all(len(row) == 3 for row in listed)
    assert set(FAMILIES) <= {check_name for check_name, _, _ in listed}
    assert {("layer_norm", "variance"), ("layer_norm", "mean")} <= {(c, n) for c, n, _ in listed}
    status, out, _ = run(capsys, "layer_norm", "--break", "list")  # a check named: its own breaks only
    assert status == 0 and sorted(line.split()[1] for line in out.splitlines()) == ["mean", "variance"]


def test_every_real_op_passes_on_the_textbook_ops(capsys):
    status, out, _ = run(capsys, "all")
    lines = out.splitlines()
    assert status == 0 and len(lines) == len(check.CHECKS) and all(line.endswith("-> ok") for line in lines), out


def test_the_default_paths_pass_too(capsys):
    status, out, _ = run(capsys, *FAMILIES, "linear_cross_entropy", "self_attention", "--default")
    assert status == 0 and out.count("-> ok") == len(FAMILIES) + 2, out


def test_verbose_shows_each_inputs_shape_and_worst_entries(capsys):
    status, out, _ = run(capsys, "layer_norm", "--verbose")
    assert status == 0 and out.rstrip().endswith("-> ok")
    for shape in ("input 0 (2, 3, 6)", "input 1 (6,)", "input 2 (6,)"):
        assert shape in out
    assert out.count("analytic") == 3 and "numerical" in out and "difference" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("    (")]
    assert len(rows) == 3 * check.SHOWN and all(abs(float(r[-3]) - float(r[-2])) < 1e-6 for r in rows)


@pytest.mark.parametrize("argv", [["nope"], ["layer_norm", "--break", "nope"], ["add", "--break", "x"],
                                  ["--break", "variance"], ["layer_norm", "--break", "variance", "--default"]])
def test_an_unknown_name_gets_a_one_line_error_and_exit_2(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_check_that_fails_its_relative_error_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(check, "max_relative_error", lambda fn, inputs: 1e-3)
    status, out, _ = run(capsys, "softmax", "dropout")
    assert status == 1 and out.count("-> FAILED") == 2


def test_the_script_exits_1_on_a_failing_check():
    result = subprocess.run([sys.executable, os.path.join(DOCS, "check.py"), "softmax", "--break", "row-sum"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "softmax: FAILED" in result.stdout, result.stdout + result.stderr


def test_each_break_marks_its_mistake_in_a_short_function():
    for b in breaks.BREAKS:
        source = inspect.getsource(b.backward)
        assert "# the mistake" in source and len(source.splitlines()) <= 20, b.backward.__name__
