"""Run the float64 finite-difference checks of one op (or all) from docs/backward.md.

    python docs/check.py layer_norm             one check (python docs/check.py all: every one)
    python docs/check.py layer_norm --verbose   and each input's worst entries, analytic beside numerical
    python docs/check.py layer_norm --default   check the default (fast) paths instead
    python docs/check.py --break list           the break-it exercises (docs/breaks.py; NAME: its own)
    python docs/check.py layer_norm --break variance   run the check on a broken backward

What is checked: the ops' textbook classes in tinygrad_nlp/ops/, the code that
docs/backward.md explains (run in reference_ops()); with --default, the paths a
normal call takes (a registered fast path of tinygrad_nlp/kernels/ where one suits).
Inputs of at most 500 numbers are checked element by element as well as along random
directions. The exit status is 0 when every check passes, 1 when one fails, 2 for a
name that is not known.

The ops' inputs come from the shared case table, ``tinygrad_nlp.testing.CASES``; the
two encoder-layer checks run a whole layer and its parameters.
"""
import argparse
import contextlib
import sys

import numpy as np
from breaks import BREAKS, broken

from tinygrad_nlp import GradcheckError, Tensor, manual_seed, nn, reference_ops
from tinygrad_nlp.gradcheck import gradcheck, max_relative_error, probes
from tinygrad_nlp.testing import CASES, small_inputs

ELEMENTWISE_LIMIT = 500  # inputs of at most this many numbers are checked element by element
SHOWN = 3  # entries per input that --verbose shows


def op_check(name):
    inputs, constants = small_inputs(name)
    return (lambda *x: CASES[name].ours(constants, *x)), inputs


def encoder_layer_check(norm_first):
    manual_seed(0)
    layer = nn.TransformerEncoderLayer(6, 2, 8, dropout=0.0, norm_first=norm_first).to(dtype=np.float64)
    mask = np.array([[True, True, False]])
    x = Tensor(np.random.default_rng(0).standard_normal((1, 3, 6)), requires_grad=True)
    return (lambda x, *params: layer(x, mask)), [x] + layer.parameters()


CHECKS = {name: (lambda name=name: op_check(name)) for name in CASES}
CHECKS["encoder_pre_norm"] = lambda: encoder_layer_check(True)
CHECKS["encoder_post_norm"] = lambda: encoder_layer_check(False)


def show_worst(name, fn, inputs, mode):
    """Each input's shape and its SHOWN largest differences, analytic beside numerical."""
    print(f"{name}: {mode} probes, the largest differences per input")
    found = {}
    for p in probes(fn, inputs, mode=mode, n_directions=5):
        found.setdefault(p.input, []).append(p)
    for i, ps in found.items():
        print(f"  input {i} {tuple(inputs[i].shape)}")
        print(f"    {'index':<20} {'analytic':>14} {'numerical':>14} {'difference':>11}")
        for p in sorted(ps, key=lambda p: p.error, reverse=True)[:SHOWN]:
            print(f"    {str(p.where):<20} {p.analytic:>14.8g} {p.numerical:>14.8g} {p.error:>11.2g}")


def run_check(name, verbose=False):
    """Print the verdict of one check; True when it passes."""
    fn, inputs = CHECKS[name]()
    elementwise = sum(x.size for x in inputs) <= ELEMENTWISE_LIMIT
    if verbose:
        show_worst(name, fn, inputs, "element-wise" if elementwise else "random-direction")
    try:
        if elementwise:  # first: it names the wrong entries themselves
            gradcheck(fn, inputs, mode="full", name=name)
        gradcheck(fn, inputs, mode="random", n_directions=5, name=name)
    except GradcheckError as error:
        print(f"{name}: FAILED: the analytic gradients (from the backward) differ from the numerical ones "
              f"(central differences of the forward)\n{error}")
        return False
    mode = "random-direction and element-wise" if elementwise else "random-direction"
    error = max_relative_error(fn, inputs)
    if error > 1e-6:
        print(f"{name}: {mode} gradchecks passed; max relative error {error:.3g} -> FAILED (above 1e-6)")
        return False
    print(f"{name}: {mode} gradchecks passed; max relative error < 1e-6 -> ok")
    return True


def run_break(name, break_name, verbose=False):
    """Run check ``name`` with its break ``break_name`` applied; True when the check (wrongly) passes."""
    b = next(b for b in BREAKS if (b.check, b.name) == (name, break_name))
    print(f"{name} with the break {break_name!r}: {b.description}")
    with broken(b):
        passed = run_check(name, verbose)
    if passed:
        print(f"the check did not catch the break {name} {break_name}!")
    else:
        print(f"Read {b.guide()}, then compare\n"
              f"  the broken backward  {b.code()}\n"
              f"  with the textbook's  {b.textbook()}")
    return passed


def fail(message):
    print(f"check.py: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help="checks to run (default, or 'all': every one)")
    parser.add_argument("--verbose", action="store_true", help="show each input's worst entries")
    parser.add_argument("--default", action="store_true", help="check the default paths, not the textbook ops")
    parser.add_argument("--break", dest="break_name", metavar="BREAK", help="'list', or a break of the check NAME")
    args = parser.parse_args(argv)
    names = list(CHECKS) if args.names in ([], ["all"]) else args.names
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        return fail(f"unknown check(s) {', '.join(unknown)}; choose from: all, {', '.join(CHECKS)}")
    if args.break_name == "list":  # every op's, or those of the checks named
        for b in BREAKS:
            if b.check in names:
                print(f"{b.check} {b.name}  {b.description}")
        return 0
    if args.break_name is not None:
        ours = [b.name for b in BREAKS if b.check == args.names[0]] if len(args.names) == 1 else []
        if len(args.names) != 1:
            return fail("--break takes one check name: python docs/check.py layer_norm --break variance")
        if args.break_name not in ours:
            return fail(f"{args.names[0]} has no break {args.break_name!r}; its breaks: {', '.join(ours) or 'none'} "
                        "(python docs/check.py --break list)")
        if args.default:
            return fail("--break replaces a textbook backward, so it runs on the textbook ops: leave out --default")
        return 0 if run_break(args.names[0], args.break_name, args.verbose) else 1
    with contextlib.nullcontext() if args.default else reference_ops():
        passed = [run_check(name, args.verbose) for name in names]
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
