"""The guide's numbers and check commands run and say what the guide says."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_worked_numbers_match_the_code():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "worked_numbers.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["embedding", "linear", "softmax", "cross_entropy",
                                  "linear_cross_entropy", "layer_norm", "dropout", "attention",
                                  "self_attention", "encoder_pre_norm", "encoder_post_norm"])
def test_check_commands_print_what_the_guide_says(name):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "check.py"), name],
                            capture_output=True, text=True)
    expected = f"{name}: random-direction and element-wise gradchecks passed; max relative error < 1e-6 -> ok"
    assert result.returncode == 0 and result.stdout.strip() == expected, result.stdout + result.stderr
    guide = open(os.path.join(ROOT, "docs", "backward.md"), encoding="utf-8").read()
    assert f"python docs/check.py {name}" in guide or name.startswith("encoder")
