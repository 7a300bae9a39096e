"""The example notebook (examples/notebook.ipynb) runs top to bottom on this interpreter.

It is executed with nbclient on an ipykernel whose kernelspec points at ``sys.executable``
(written into a temporary ``JUPYTER_PATH``, which comes before any user or system spec of the
same name), with the k-means restarts of its ``parameters`` cell lowered in memory. Any cell
that raises fails the test (nbclient's CellExecutionError, with the cell and the traceback).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"
RESTARTS = 3


def _kernel_on_this_python(root: Path) -> None:
    """A ``python3`` kernelspec under ``root/kernels`` that starts this interpreter."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (repeval tests)", "language": "python"}))


def _parameters_cell(nb) -> int:
    """Index of the first code cell: the one tagged ``parameters`` (papermill's convention)."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in nb.cells[first].metadata.get("tags", []), "the first code cell must be tagged parameters"
    return first


def test_the_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert re.fullmatch(r"RESTARTS = 20\b.*", nb.cells[_parameters_cell(nb)].source.strip())


def test_the_notebook_runs(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    jupyter = tmp_path / "jupyter"
    _kernel_on_this_python(jupyter)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable

    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = _parameters_cell(nb)
    nb.cells[first].source = f"RESTARTS = {RESTARTS}"
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": cwd}})
    client.execute()  # raises CellExecutionError naming the cell on any error

    outputs = "\n".join(json.dumps(o.get("data", o.get("text", ""))) for c in nb.cells if c.cell_type == "code"
                        for o in c.outputs)
    assert f"restarts={RESTARTS}" in outputs  # Results' HTML table shows the overridden setting
    assert "McNemar" in outputs  # the comparison of the two encoders ran
    assert sorted(p.name for p in cwd.iterdir()) == []  # workdir=None: nothing written
