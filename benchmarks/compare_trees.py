"""Time one training step of two checkouts of this project in one process, alternating
step by step: the A/B of a change (old tree against new) on a noisy machine.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_trees.py /tmp/before . --config mlm,classifier,minilm --repeats 10

Each tree's ``tinygrad_nlp`` package is copied under a name of its own (``tinygrad_nlp_a``,
``tinygrad_nlp_b``: the package imports itself only relatively) and this checkout's
``benchmarks/train_step.py`` builds the step from each, so both steps are built the same way
and differ only in the package. Prints each tree's median step, their ratio, and the median
and range of the ratios pair by pair.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import shutil
import statistics
import sys
import tempfile
import types

HERE = pathlib.Path(__file__).resolve().parent


def import_package(folder: pathlib.Path):
    """Import the package in ``folder`` under the folder's name (its modules import each
    other relatively, so they follow)."""
    spec = importlib.util.spec_from_file_location(folder.name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[folder.name] = module
    spec.loader.exec_module(module)


def load_step_builder(package: str):
    """train_step.py (and the common.py it imports) with ``tinygrad_nlp`` read as ``package``."""
    modules = {}
    for name in ("common", "train_step"):
        source = (HERE / f"{name}.py").read_text(encoding="utf-8").replace("tinygrad_nlp", package)
        module = types.ModuleType(f"{name}_{package}")
        module.__file__ = str(HERE / f"{name}.py")
        sys.modules["common"] = modules.get("common", module)  # train_step's `from common import ...`
        exec(compile(source, f"{name}.py ({package})", "exec"), module.__dict__)
        modules[name] = module
    return modules["train_step"], modules["common"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tree_a", help="a checkout (the one before the change)")
    p.add_argument("tree_b", help="another checkout (the one after)")
    p.add_argument("--config", default="mlm", help="comma-separated configs of train_step.py (mlm)")
    p.add_argument("--repeats", type=int, default=10, help="timed pairs of steps per config (10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each first (2)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        for tag, tree in (("a", args.tree_a), ("b", args.tree_b)):
            shutil.copytree(pathlib.Path(tree) / "tinygrad_nlp", pathlib.Path(scratch) / f"tinygrad_nlp_{tag}")
        for tag in "ab":
            import_package(pathlib.Path(scratch) / f"tinygrad_nlp_{tag}")
        (step_a, common), (step_b, _) = load_step_builder("tinygrad_nlp_a"), load_step_builder("tinygrad_nlp_b")
        print(f"A = {args.tree_a}, B = {args.tree_b}; {args.repeats} pairs per config after {args.warmup} warm-up steps")
        for config in args.config.split(","):
            c = dict(step_a.CONFIGS[config], no_padding=False)
            steps = {"A": step_a.ours(c, "cpu", config, 1), "B": step_b.ours(c, "cpu", config, 1)}
            times = common.time_alternating(steps, args.repeats, args.warmup, settle=common.STEP_SETTLE_SECONDS)
            a, b = (1000 * statistics.median(times[k]) for k in "AB")
            pairs = [tb / ta for ta, tb in zip(times["A"], times["B"])]
            print(f"{config:12} A {a:9.1f} ms   B {b:9.1f} ms   B/A {b / a:.3f}   pair by pair: median "
                  f"{statistics.median(pairs):.3f}, range {min(pairs):.2f}-{max(pairs):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
