"""The shape of the package, checked: imports run one way (no cycle, counting imports
inside functions; no module below ``nn`` importing from above it), and only the backend
knows NumPy from CuPy. ``lint-imports`` (setup.cfg) checks the layers in CI as well."""
import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tinygrad_nlp"
LAYERS = ["errors", "backend", "tensor", "ops", "functional", "nn", "models"]  # bottom to top


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Every tinygrad_nlp module ``path`` imports, anywhere in the file (functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if module_path(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == "tinygrad_nlp" and module_path(m)} - {name}


def module_path(name):
    base = PACKAGE.parent.joinpath(*name.split("."))
    return (base / "__init__.py") if (base / "__init__.py").exists() else base.with_suffix(".py") if \
        base.with_suffix(".py").exists() else None


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer_of(name):
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_import_graph_has_no_cycle():
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt == "tinygrad_nlp":  # the package's own __init__ is the public face, imported by nothing inside
                continue
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_layers_import_downward_only():
    for module, targets in GRAPH.items():
        mine = layer_of(module)
        if mine is None:
            continue
        for target in targets:
            theirs = layer_of(target)
            assert theirs is None or theirs <= mine, f"{module} ({LAYERS[mine]}) imports {target} ({LAYERS[theirs]})"
            if theirs is None and target != "tinygrad_nlp":
                assert mine >= LAYERS.index("nn") or target.split(".")[1] not in ("checkpoint", "data", "optim"), \
                    f"{module} imports {target}, which sits beside the layers above it"


def test_no_module_below_nn_imports_the_package_root():
    for module, targets in GRAPH.items():
        assert "tinygrad_nlp" not in targets or module == "tinygrad_nlp", f"{module} imports the package root"


ARRAY_MODULE_INSPECTION = re.compile(r"xp\.__name__|\bxp is (not )?np\b|\bxp (!=|==) np\b|^\s*(import|from) cupyx?\b",
                                     re.MULTILINE)


def test_only_the_backend_knows_numpy_from_cupy():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.parent.name != "backend" and ARRAY_MODULE_INSPECTION.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"array-module inspection outside backend/: {offenders}"


KERNEL_SWITCH = re.compile(r"\bkernel_suits\b|\bfused_kernels\b|use_fused_kernel")


def test_no_op_or_optimizer_branches_on_the_kernel_switch():
    """The fused-kernel choice is made in one place, ``backend.kernels.dispatch``: the ops
    and the optimizer declare both paths and never ask the switch themselves."""
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.parent.name != "backend" and KERNEL_SWITCH.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"the kernel switch asked outside backend/: {offenders}"


def test_the_backend_is_rooms_of_one_concern_each():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (PACKAGE / "backend").glob("*.py")}
    assert {"arrays.py", "random.py", "memory.py", "threads.py", "kernels.py", "collectives.py"} <= set(sizes)
    assert max(sizes.values()) <= 250, sizes


def test_examples_and_tools_do_not_edit_sys_path():
    root = PACKAGE.parent
    offenders = [str(p.relative_to(root)) for folder in ("examples", "docs", "benchmarks", "tests", "tinygrad_nlp")
                 for p in (root / folder).rglob("*.py") if "sys.path." in p.read_text(encoding="utf-8")
                 and p.name != "test_architecture.py"]
    assert not offenders, offenders
