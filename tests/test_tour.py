"""docs/tour.ipynb runs from top to bottom without a cell error, and is stored without
outputs (so its diffs show only what was written)."""
import json
import os

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
TOUR = os.path.join(DOCS, "tour.ipynb")


def test_tour_is_stored_without_outputs():
    with open(TOUR, encoding="utf-8") as f:
        notebook = json.load(f)
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "the tour has no code cells"
    for number, cell in enumerate(code):
        assert cell["outputs"] == [] and cell["execution_count"] is None, \
            f"code cell {number} of docs/tour.ipynb was stored with outputs: clear them before committing"


def test_tour_runs_without_an_error():
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[test]')")
    import nbformat
    notebook = nbformat.read(TOUR, as_version=4)
    # in the notebook's folder, as Jupyter runs it (it imports docs/breaks.py); a cell error raises
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": DOCS}}).execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs)
    assert "gradcheck(layer_norm)" in printed and "largest relative difference" in printed
