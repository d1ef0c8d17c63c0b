"""tinygrad_nlp.graph: the DOT of known graphs, parsed (nodes, edges, saved arrays), the
saved-memory accounting against the arrays the Functions hold, rendering, and errors."""
import re
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import tinygrad_nlp.functional as F
from tinygrad_nlp import ArgumentError, GraphError, MissingDependencyError, Tensor, graph, manual_seed
from tinygrad_nlp.nn import TransformerEncoderLayer


def parse_dot(text):
    """({node: label}, [(source, target)]) of the DOT that graph.to_dot writes."""
    nodes = {m.group(1): m.group(2).replace("\\n", "\n") for m in re.finditer(r'^\s+(\w+) \[.*label="(.*)"\];$', text, re.M)}
    edges = re.findall(r"^\s+(\w+) -> (\w+);$", text, re.M)
    return nodes, edges


def small_graph():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w, b = Tensor(rng.standard_normal((5, 4)), requires_grad=True), Tensor(rng.standard_normal(5), requires_grad=True)
    gamma, beta = Tensor(np.ones(5), requires_grad=True), Tensor(np.zeros(5), requires_grad=True)
    out = F.layer_norm(F.linear(x, w, b), gamma, beta)
    return out, dict(x=x, w=w, b=b, gamma=gamma, beta=beta)


def test_dot_of_layer_norm_of_linear_has_exactly_the_expected_nodes_edges_and_saved_arrays():
    out, params = small_graph()
    nodes, edges = parse_dot(graph.to_dot(out, params))
    ops = {name: label for name, label in nodes.items() if name.startswith("op")}
    leaves = {label.split("\n")[0]: name for name, label in nodes.items() if name.startswith("leaf")}
    assert sorted(leaves) == ["b", "beta", "gamma", "w", "x"]
    assert [label.split("\n")[0] for _, label in sorted(ops.items())] == ["0. LayerNorm", "1. Linear"]
    layer_norm, linear = sorted(ops)
    assert "(3, 5) float64" in ops[layer_norm] and "(3, 5) float64" in ops[linear]
    saved = {name: set(re.findall(r"(\w+): \((?:[\d, ]*)\) float64, ([\d,]+) B", label)) for name, label in ops.items()}
    assert saved[linear] == {("x", "96"), ("weight", "160")}
    assert saved[layer_norm] == {("x", "120"), ("weight", "40"), ("mean", "24"), ("rstd", "24")}
    assert sorted(edges) == sorted([(leaves["x"], linear), (leaves["w"], linear), (leaves["b"], linear),
                                    (linear, layer_norm), (leaves["gamma"], layer_norm), (leaves["beta"], layer_norm)])


def test_one_encoder_layer_graph_names_every_parameter_and_saves_attention_probabilities():
    manual_seed(0)
    layer = TransformerEncoderLayer(8, 2, 16, dropout=0.1, norm_first=True)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32), requires_grad=True)
    loss = layer(x, np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)).mean()
    nodes, edges = parse_dot(graph.to_dot(loss, layer.named_parameters()))
    leaf_names = sorted(label.split("\n")[0] for name, label in nodes.items() if name.startswith("leaf"))
    assert leaf_names == sorted(["input"] + [n for n, _ in layer.named_parameters()])
    op_names = [label.split("\n")[0].split(". ")[1] for name, label in sorted(nodes.items(), key=lambda kv: int(
        kv[0][2:]) if kv[0].startswith("op") else -1) if name.startswith("op")]
    assert op_names == ["Mean", "Add", "Dropout", "Linear", "Dropout", "Linear", "LayerNorm", "Add", "Dropout",
                        "Linear", "PackedSelfAttention", "Linear", "LayerNorm"]
    attention = next(label for label in nodes.values() if "PackedSelfAttention" in label)
    assert "probs: (2, 2, 4, 4) float32, 256 B" in attention and "keep: (2, 2, 4, 4) bool, 64 B" in attention
    assert any("positive: (8, 16) bool, 128 B" in label for label in nodes.values())  # linear1 with its ReLU
    assert len(edges) == sum(1 for fn in graph._functions(loss)[1] for p in fn.parents if p is not None)


def test_saved_memory_matches_the_arrays_the_functions_hold():
    manual_seed(0)
    layer = TransformerEncoderLayer(8, 2, 16, dropout=0.1, norm_first=False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32), requires_grad=True)
    loss = layer(x).mean()
    report = graph.saved_memory(loss)
    functions = graph._functions(loss)[1]
    assert [row.op for row in report.rows] == [fn.name for fn in functions]
    parameters = {id(p.data) for _, p in layer.named_parameters()} | {id(x.data)}
    owners = {}
    for fn in functions:
        for name in fn.saved_names:
            array = getattr(fn, name)
            array = getattr(array, "keep", array)  # a dropout draw's boolean mask
            if isinstance(array, np.ndarray):
                while array.base is not None:
                    array = array.base
                if id(array) not in parameters:
                    owners[id(array)] = array.nbytes
    assert report.total_bytes == sum(owners.values()) > 0
    assert sum(row.bytes for row in report.rows) >= report.total_bytes
    assert "total" in report.table()


def test_after_backward_the_graph_is_gone_and_a_leaf_has_none():
    out, _ = small_graph()
    out.sum().backward()
    with pytest.raises(GraphError, match="already freed by backward"):
        graph.to_dot(out)
    with pytest.raises(GraphError, match="has no graph"):
        graph.saved_memory(Tensor(np.ones(3)))


def test_render_writes_a_valid_svg(tmp_path):
    pytest.importorskip("graphviz", reason="the graphviz package is not installed")
    import shutil
    if not shutil.which("dot"):
        pytest.skip("Graphviz's dot is not installed")
    out, params = small_graph()
    path = graph.render(out, tmp_path / "g.svg", params)
    root = ElementTree.parse(path).getroot()
    assert root.tag.endswith("svg")
    text = (tmp_path / "g.svg").read_text()
    assert "LayerNorm" in text and "gamma" in text


def test_render_errors_are_one_line(tmp_path, monkeypatch):
    out, _ = small_graph()
    with pytest.raises(ArgumentError, match=r"use a \.svg or \.png path"):
        graph.render(out, tmp_path / "g.pdf")
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(MissingDependencyError, match=r"needs the graphviz package: pip install 'tinygrad_nlp\[graph\]'"):
        graph.render(out, tmp_path / "g.svg")


def test_render_without_the_dot_program(tmp_path, monkeypatch):
    pytest.importorskip("graphviz", reason="the graphviz package is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    out, _ = small_graph()
    with pytest.raises(MissingDependencyError, match="needs the Graphviz program dot"):
        graph.render(out, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def micrograd_example():
    """micrograd's README expression: L = (a * b + c) * f."""
    a, b, c, f = (Tensor(np.float64(v), requires_grad=True) for v in (2.0, -3.0, 10.0, -2.0))
    e = a * b
    d = e + c
    L = d * f
    return L, dict(a=a, b=b, c=c, f=f, e=e, d=d, L=L)


def test_values_label_every_node_with_its_value_and_the_gradient_flowing_into_it():
    L, named = micrograd_example()
    nodes, edges = parse_dot(graph.to_dot(L, named, values=True))
    by_name = {label.split("\n")[0].split(" -> ")[-1]: label.split("\n") for label in nodes.values()}
    assert sorted(by_name) == ["L", "a", "b", "c", "d", "e", "f"]
    shown = {name: (lines[2], lines[3]) for name, lines in by_name.items()}
    assert shown == {"a": ("value 2", "grad 6"), "b": ("value -3", "grad -4"), "c": ("value 10", "grad -2"),
                     "f": ("value -2", "grad 4"), "e": ("value -6", "grad -2"), "d": ("value 4", "grad -2"),
                     "L": ("value -8", "grad 1")}
    assert by_name["e"][0] == "2. Mul -> e" and len(edges) == 6
    L.backward()  # the graph was left as it was: backward gives the gradients the picture shows
    assert [named[n].grad.item() for n in "abcf"] == [6.0, -4.0, -2.0, 4.0]


def test_a_shown_gradient_is_the_leafs_grad_and_drawing_leaves_the_backward_unchanged():
    out, params = small_graph()
    loss = (out * out).mean()
    dot = graph.to_dot(loss, params, values=True)
    walked = graph._gradients(loss)
    loss.backward()
    nodes, _ = parse_dot(dot)
    for name, t in params.items():
        label = next(label for label in nodes.values() if label.startswith(name + "\n")).split("\n")
        assert label[2] == "value " + graph._compact(t.data) and label[3] == "grad " + graph._compact(t.grad)
        assert np.array_equal(walked[id(t)], t.grad), name  # the same walk, bit for bit
    fresh, fresh_params = small_graph()
    (fresh * fresh).mean().backward()
    assert all(np.array_equal(params[n].grad, fresh_params[n].grad) for n in params)
    unnamed = next(label for label in nodes.values() if label.startswith("2. LayerNorm"))
    assert "value not kept (name its Tensor in params)" in unnamed and "\ngrad [" in unnamed


def test_values_after_a_retained_backward_and_their_errors():
    L, named = micrograd_example()
    before = graph.to_dot(L, named, values=True)
    L.backward(retain_graph=True)
    assert graph.to_dot(L, named, values=True) == before
    assert graph._compact(np.arange(8.0) / 3) == "[0 0.3333 0.6667 ... 2 2.333]"
    out, _ = small_graph()
    with pytest.raises(GraphError, match=r"one-element tensor, got shape \(3, 5\)"):
        graph.to_dot(out, values=True)
    assert "value" not in graph.to_dot(out)
