"""A picture of the backward graph, and of what each node keeps for its backward.

    loss = model.loss(ids, targets)
    print(graph.saved_memory(loss).table())        # op, saved arrays, bytes; the total
    graph.render(loss, "step.svg", params=model.named_parameters())
    loss.backward()                                  # frees the graph: draw it before

``to_dot`` gives Graphviz DOT text: one node per Function (its place in the order the
backward visits it, op name, output shape and dtype, and the arrays it saved, with their
shapes and bytes), one per leaf that wants a gradient (named when ``params`` is given),
edges in data-flow order. ``render`` turns it into SVG or PNG through the ``graphviz``
package and its ``dot`` program (the optional extra ``graph``).

With ``values=True`` each node also shows its output's value and the gradient the backward
sends into it, as micrograd's ``draw_dot`` shows data and grad (for small examples):

    a, b = Tensor(2.0, requires_grad=True), Tensor(-3.0, requires_grad=True)
    e = a * b; L = e.tanh()
    print(graph.to_dot(L, dict(a=a, b=b, e=e, L=L), values=True))   # before L.backward()

The graph keeps no intermediate Tensor (only what each backward saves), so an op's value
is shown when its output Tensor is named in ``params`` (the output of the last op always);
the gradients are found by walking the kept graph once more, as ``backward()`` does, keeping
each node's gradient where ``backward()`` keeps only the leaves' (``.grad``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import backend
from .errors import ArgumentError, GraphError, MissingDependencyError
from .files import atomic_write
from .tensor import Tensor, graph_order


def _functions(tensor: Tensor):
    """(the Functions and leaves in the order the backward visits them, the Functions alone).
    Raises GraphError when there is no graph, or it was freed by a backward."""
    if not isinstance(tensor, Tensor) or tensor.creator is None:
        raise GraphError("graph: this tensor has no graph (a leaf, or made under no_grad or from inputs "
                         "that require no gradient)")
    order = graph_order(tensor.creator)
    functions = [node for node in order if not isinstance(node, Tensor)]
    if any(fn.released for fn in functions):
        raise GraphError("graph: the graph was already freed by backward(); draw it before calling backward(), "
                         "or call backward(retain_graph=True)")
    return order, functions


def _owner(array):
    """The array that owns the memory of ``array`` (itself, or the base of a view)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


@dataclass
class SavedRow:
    op: str
    arrays: dict  # {name: (shape, dtype name, bytes)}
    bytes: int


@dataclass
class SavedMemory:
    """What a graph's Functions keep for their backward: one row per Function (in the
    order the backward visits them) and ``total_bytes``, the memory those arrays hold
    beyond the leaves' own (the weights and inputs are held anyway), each owning buffer
    counted once (an array saved by two ops, or a view of another, costs nothing extra)."""
    rows: list = field(default_factory=list)
    total_bytes: int = 0

    def table(self) -> str:
        lines = [f"{'op':22} {'bytes':>12}  saved arrays"]
        for row in self.rows:
            saved = ", ".join(f"{n} {tuple(s)} {d}" for n, (s, d, _) in row.arrays.items()) or "-"
            lines.append(f"{row.op:22} {row.bytes:12,}  {saved}")
        lines.append(f"{'total':22} {self.total_bytes:12,}  (each buffer once, leaves' own arrays not counted)")
        return "\n".join(lines)


def saved_memory(tensor: Tensor) -> SavedMemory:
    """The arrays the graph behind ``tensor`` keeps for its backward, op by op, and the
    memory they hold in all."""
    order, functions = _functions(tensor)
    leaves = {id(_owner(t.data)) for t in order if isinstance(t, Tensor)}
    result, owners = SavedMemory(), {}
    for fn in functions:
        saved = fn.saved_arrays()
        arrays = {name: (tuple(a.shape), a.dtype.name, int(a.nbytes)) for name, a in saved.items()}
        result.rows.append(SavedRow(fn.name, arrays, sum(b for _, _, b in arrays.values())))
        for a in saved.values():
            owner = _owner(a)
            if id(owner) not in leaves:
                owners[id(owner)] = int(owner.nbytes)
    result.total_bytes = sum(owners.values())
    return result


def _quote(text: str) -> str:
    """A DOT string literal; line breaks become centred ``\\n`` breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _compact(array, items: int = 6) -> str:
    """An array on one line, each number to 4 significant digits: all of it up to
    ``items`` numbers, else its first three and last two (flattened)."""
    flat = [f"{float(v):.4g}" for v in backend.asnumpy(array).reshape(-1)]
    if getattr(array, "ndim", 0) == 0:
        return flat[0]
    return "[" + " ".join(flat if len(flat) <= items else flat[:3] + ["..."] + flat[-2:]) + "]"


def _gradients(tensor: Tensor) -> dict:
    """{id(node): the gradient flowing into it} for every Function (w.r.t. its output) and
    leaf of the graph behind the one-element ``tensor``: the walk of ``Tensor.backward``
    from a seed of ones, on the kept graph (nothing released, no ``.grad`` touched)."""
    order, _ = _functions(tensor)
    if tensor.size != 1:
        raise GraphError(f"graph: values=True shows the gradients of backward() from a one-element tensor, "
                         f"got shape {tensor.shape}")
    grads = {id(tensor.creator): backend.get_array_module(tensor.data).ones_like(tensor.data)}
    shown = {}
    for node in order:
        g = grads.pop(id(node), None)
        if g is None:
            continue
        shown[id(node)] = g.copy()  # the op's backward may reuse g
        if isinstance(node, Tensor):
            continue
        node.may_overwrite_saved = False  # the graph stays usable for backward()
        input_grads = node.backward(g)
        for parent, gi in zip(node.parents, input_grads if isinstance(input_grads, tuple) else (input_grads,)):
            if gi is not None and parent is not None:
                grads[id(parent)] = gi if id(parent) not in grads else grads[id(parent)] + gi
    return shown


def to_dot(tensor: Tensor, params=None, values: bool = False) -> str:
    """Graphviz DOT text of the graph behind ``tensor``. ``params``: (name, Tensor) pairs
    (``model.named_parameters()``) or a dict, to name the leaves, and the ops whose
    outputs are among them. ``values``: also show each node's value and the gradient
    flowing into it (the module docstring; ``tensor`` must have one element)."""
    order, functions = _functions(tensor)
    named = list(params.items() if isinstance(params, dict) else params or ())
    names = {id(t.creator if t.creator is not None else t): name for name, t in named}
    outputs = {id(t.creator): t.data for _, t in named if t.creator is not None}
    outputs[id(tensor.creator)] = tensor.data
    grads = _gradients(tensor) if values else {}

    def shown(node, value):
        if not values:
            return ""
        value = "not kept (name its Tensor in params)" if value is None else _compact(value)
        g = grads.get(id(node))
        if g is not None and isinstance(node, Tensor):  # as backward() accumulates it into .grad
            g = g.astype(node.dtype).reshape(node.shape)
        return f"\nvalue {value}\ngrad {'-' if g is None else _compact(g)}"

    node_of = {}  # id(Function or leaf Tensor) -> DOT node name
    lines = ["digraph backward {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    for t in order:
        if isinstance(t, Tensor):
            name = f"leaf{len(node_of)}"
            node_of[id(t)] = name
            label = f"{names[id(t)]}\n" if id(t) in names else "input\n"
            label += f"{t.shape} {t.dtype.name}" + shown(t, t.data)
            lines.append(f"  {name} [shape=box, style=filled, fillcolor=lightblue, label={_quote(label)}];")
    for step, fn in enumerate(functions):
        name = f"op{step}"
        node_of[id(fn)] = name
        saved = [f"{n}: {tuple(a.shape)} {a.dtype.name}, {int(a.nbytes):,} B" for n, a in fn.saved_arrays().items()]
        label = (f"{step}. {fn.name}" + (f" -> {names[id(fn)]}" if id(fn) in names else "")
                 + f"\n{fn.output_shape} {fn.output_dtype.name}" + shown(fn, outputs.get(id(fn)))
                 + ("\nsaves " + "\n".join(saved) if saved else ""))
        lines.append(f"  {name} [shape=box, style=rounded, label={_quote(label)}];")
    for fn in functions:
        for parent in fn.parents:
            if parent is not None:
                lines.append(f"  {node_of[id(parent)]} -> {node_of[id(fn)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(tensor: Tensor, path, params=None, values: bool = False) -> str:
    """Draw the graph behind ``tensor`` into ``path`` (.svg or .png) with Graphviz;
    returns the path. ``params`` and ``values`` as for ``to_dot``."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ArgumentError(f"render: cannot draw to {os.fspath(path)!r}; use a .svg or .png path")
    dot = to_dot(tensor, params, values)
    try:
        import graphviz
    except ImportError:
        raise MissingDependencyError("render needs the graphviz package: pip install 'tinygrad_nlp[graph]' "
                                     "(and the Graphviz program dot: apt install graphviz)") from None
    try:
        image = graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise MissingDependencyError("render needs the Graphviz program dot, which is not installed "
                                     "(apt install graphviz, brew install graphviz)") from None
    with atomic_write(path, "wb") as f:
        f.write(image)
    return os.fspath(path)


def draw_training_step(path, loss_fn, params=None) -> str:
    """Build the graph of ``loss_fn()``, draw it into ``path`` (.svg, .png, or .dot for
    the DOT text alone), then run its backward while measuring the memory the step
    allocates; returns a line comparing what the graph saves with that measurement (the
    peak of NumPy's allocations during forward and backward, via ``tracemalloc``)."""
    import tracemalloc
    tracemalloc.start()
    try:
        loss = loss_fn()
        saved = saved_memory(loss)
        if os.fspath(path).endswith(".dot"):
            with open(path, "w", encoding="utf-8") as f:
                f.write(to_dot(loss, params))
        else:
            render(loss, path, params)
        loss.backward()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (f"graph of one training step: {len(saved.rows)} ops, drawn to {os.fspath(path)}; saved for backward "
            f"{saved.total_bytes / 2 ** 20:.2f} MiB (graph.saved_memory), measured step memory "
            f"{peak / 2 ** 20:.2f} MiB (peak NumPy allocations of forward + backward)")
