"""The walk-through notebook, executed headless as a reader would run it: top to bottom on a fresh checkout
(no data, the synthetic demo), then every cell again on its own, in reverse order."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "ecg_tensor_pipeline.ipynb"
CELL_TIMEOUT_S = 1800  # a bound for a hung kernel, not a speed expectation


def _code_cells(notebook) -> list[int]:
    return [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]


def _text(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def test_the_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = [notebook.cells[index] for index in _code_cells(notebook)]
    assert len(cells) == 7
    assert all(cell.outputs == [] and cell.execution_count is None for cell in cells)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_and_then_any_cell_again_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_NOTEBOOK_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("ECG_DATA_DIR", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError on any error
        first_run = [_text(notebook.cells[index]) for index in _code_cells(notebook)]
        for index in reversed(_code_cells(notebook)):  # out of order: each cell alone, last to first
            client.execute_cell(notebook.cells[index], index)

    settings, smoke, batch, model, figures, scoring, summary = first_run
    assert f"artifacts: {tmp_path / 'artifacts' / 'demo_cinc2021'}" in settings
    assert "success: True" in smoke and "materialized test_metrics" in smoke and "FAILED" not in smoke
    assert "one batch: signals (8, 12, 5000) torch.float32" in batch
    assert "parameters (smoke-test width 8)" in model
    assert "input (4, 12, 5000) + rhythm features (4, 25) -> logits (4, 5)" in model
    assert "test macro F1" in figures
    figures_cell = notebook.cells[_code_cells(notebook)[4]]
    assert sum("image/png" in output.get("data", {}) for output in figures_cell.outputs) == 3
    assert "scored 5 recording(s), 0 not scored" in scoring
    assert "demo_cinc2021\n  records     200 discovered, 199 processed, 1 failed" in summary
    assert (tmp_path / "artifacts" / "demo_cinc2021" / "models" / "best.pth").is_file()
    assert not (PROJECT_ROOT / "notebooks" / "artifacts").exists()
