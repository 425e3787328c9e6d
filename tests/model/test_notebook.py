"""The exploration notebook runs top to bottom (nbclient, real kernel, real data)."""

from __future__ import annotations

import ast

import nbformat
import pytest
from nbclient import NotebookClient

from tests.factories import ROOT

NOTEBOOK = ROOT / "notebooks" / "churn_exploration.ipynb"


@pytest.mark.slow
def test_notebook_executes_and_reaches_the_floors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    ]
    text = "".join(outputs)
    assert "churn rate" in text and "gradient boosting" in text
    final = outputs[-1]
    assert "'f1':" in final and "total_charge" in final
    scores = ast.literal_eval(final.strip().splitlines()[-1])
    assert scores["f1"] >= 0.92 and scores["roc_auc"] >= 0.92
