"""Progress of long CLI work: a bar with rate and ETA on a terminal, plain periodic lines otherwise; the quiet
`ecg-assets materialize` output. Terminal runs use a real pseudo-terminal, plain runs a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ecg_assets.cli import main
from ecg_assets.cli.progress import CLEAR_LINE, ProgressBar
from ecg_assets.cli.run_output import RunOutputFilter
from ecg_assets.core.training import DeviceSettings, TrainingConfig, train_model

from .conftest import PROJECT_ROOT, QUICK_START_PARTITION
from .test_preprocessing import _process, _small_cinc2017

RUN_ID = "f5e9e493-e951-4c30-90bf-c298e4d8bfe5"


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_one_redrawn_bar_with_rate_and_eta():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar("scoring", "records", stream, interactive=True, clock=clock)
    for done in range(0, 201, 10):
        bar.update(done, 200)
        clock.now += 1.0  # 10 records per second
    bar.close()
    output = stream.getvalue()
    frames = output.split(CLEAR_LINE)[1:]
    assert len(frames) == 22 and output.count("\n") == 1  # redrawn in place (and once more on close), one newline
    assert "scoring [############------------]  50% 100/200 records 10.0 records/s ETA 0:10" in frames[10]
    assert frames[-1].startswith("scoring [########################] 100% 200/200 records") and "done" in frames[-1]


def test_a_terminal_bar_is_not_redrawn_faster_than_ten_times_a_second_but_always_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar("reading", "records", stream, interactive=True, clock=clock)
    for done in range(1, 1001):
        clock.now += 0.001
        bar.update(done, 1000)
    assert 1 < stream.getvalue().count(CLEAR_LINE) <= 12
    assert "1000/1000 records" in stream.getvalue().split(CLEAR_LINE)[-1]


def test_without_a_terminal_a_plain_line_per_tenth_of_the_work():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar("preprocessing", "records", stream, interactive=False, clock=clock)
    for done in range(0, 3001):
        bar.update(done, 3000)
        clock.now += 0.01
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert [re.search(r"\((\d+)%", line).group(1) for line in lines] == [str(p) for p in range(10, 101, 10)]
    assert lines[4] == "preprocessing: 1500/3000 records (50%, 100.0 records/s, ETA 0:15)"
    assert lines[-1].endswith("done)")


def test_slow_work_shows_seconds_per_unit():
    stream, clock = io.StringIO(), FakeClock()
    bar = ProgressBar("training", "epochs", stream, interactive=False, clock=clock)
    clock.now += 90
    bar.update(3, 20)
    assert stream.getvalue() == "training: 3/20 epochs (15%, 30.0 s/epoch, ETA 8:30)\n"


def _event(level: str, rest: str) -> str:
    return f"2026-12-02 00:57:05 +0000 - dagster - {level} - __ASSET_JOB - {RUN_ID} - {rest}\n"


def test_materialize_output_keeps_what_a_person_reads():
    stream = io.StringIO()
    output = RunOutputFilter(stream, interactive=False)
    lines = [
        "/venv/click/core.py:911: SupersessionWarning: Function `asset_materialize_command` is superseded\n",
        "  return callback(*args, **kwargs)\n",
        "/venv/dagster/x.py:100: BetaWarning: Parameter `include_sources` is currently in beta\n",
        "  return AssetSelection.all(include_sources=self.include_sources)\n",
        _event("DEBUG", '14953 - RUN_START - Started execution of run for "__ASSET_JOB".'),
        _event("DEBUG", '15156 - trained_model - STEP_START - Started execution of step "trained_model".'),
        _event("WARNING", "trained_model - no CUDA device available: using the CPU"),
        _event(
            "INFO", "trained_model - training ECGResNet1D (1013 parameters) on cpu: 9 train / 2 val records, 2 epochs"
        ),
        _event("INFO", "trained_model - epoch 1 batch 50/100 loss 1.2"),
        _event("INFO", "trained_model - epoch 1/2 train_loss 1.6 val_loss 1.6 val_macro_f1 0.08 lr 1.00e-03 (1.2 s)"),
        _event("DEBUG", '15156 - trained_model - STEP_SUCCESS - Finished execution of step "trained_model" in 5.61s.'),
        _event("WARNING", "test_metrics - no CUDA device available: using the CPU"),
        _event("DEBUG", "15506 - test_metrics_checks - ASSET_CHECK_EVALUATION - Asset check 'x' on 'y' passed."),
        _event("DEBUG", "15506 - test_metrics_checks - ASSET_CHECK_EVALUATION - Asset check 'z' on 'y' failed."),
        _event("ERROR", '15506 - test_metrics - STEP_FAILURE - Execution of step "test_metrics" failed.'),
        "Traceback (most recent call last):\n",
        "  ValueError: the reason\n",
        "/venv/user.py:3: UserWarning: something the user wrote\n",
    ]
    for line in lines:
        output.feed(line)
    output.close()
    shown = stream.getvalue().splitlines()
    assert shown[:2] + shown[4:] == [
        "WARNING trained_model: no CUDA device available: using the CPU",
        "trained_model: training ECGResNet1D (1013 parameters) on cpu: 9 train / 2 val records, 2 epochs",
        "trained_model: epoch 1/2 train_loss 1.6 val_loss 1.6 val_macro_f1 0.08 lr 1.00e-03 (1.2 s)",
        "trained_model: done in 5.61s",
        "test_metrics_checks: Asset check 'z' on 'y' failed.",
        'ERROR test_metrics: Execution of step "test_metrics" failed.',
        "Traceback (most recent call last):",
        "  ValueError: the reason",
        "/venv/user.py:3: UserWarning: something the user wrote",
    ]
    # the batch line (half of epoch 1) and the epoch line drive the progress lines (rates depend on the clock)
    assert shown[2].startswith("trained_model: training: 0/2 epochs (25%, ")
    assert shown[3].startswith("trained_model: training: 1/2 epochs (50%, ")


def test_on_a_terminal_materialize_lines_print_above_the_preprocessing_bar():
    stream = io.StringIO()
    output = RunOutputFilter(stream, interactive=True)
    output.feed(_event("DEBUG", '7 - processed_records - STEP_START - Started execution of step "processed_records".'))
    for done in (20, 40):
        output.feed(_event("INFO", f"processed_records - stored {done}/40 records (0 reused, 0 failed)"))
    output.feed(_event("INFO", "processed_records - stored 40 of 40 records in 1.0 s with 2 worker(s): 40 processed"))
    output.feed(
        _event("DEBUG", '7 - processed_records - STEP_SUCCESS - Finished execution of step "processed_records".')
    )
    output.close()
    screen = stream.getvalue()
    frames = [frame for frame in screen.split(CLEAR_LINE) if frame]
    assert frames[0].startswith("processed_records: preprocessing [############------------]  50% 20/40 records")
    # the bar ends full on its own line; the lines after it print below, not over it
    assert re.search(
        r"processed_records: preprocessing \[#{24}\] 100% 40/40 records .* done\n"
        r"processed_records: stored 40 of 40 records in 1\.0 s with 2 worker\(s\): 40 processed\n"
        r"processed_records: done\n$",
        frames[-1],
    ), frames[-1]
    assert screen.count("\n") == 3


def test_verbose_output_is_the_dagster_output_unchanged():
    stream = io.StringIO()
    output = RunOutputFilter(stream, verbose=True, interactive=True)
    lines = ["/x.py:1: BetaWarning: beta\n", _event("DEBUG", "1 - RUN_START - Started.")]
    for line in lines:
        output.feed(line)
    assert stream.getvalue() == "".join(lines)


def _run_in_terminal(command: list[str], env: dict[str, str], timeout: float = 900) -> tuple[int, str]:
    """Run `command` with stderr on a pseudo-terminal (stdout discarded); returns its exit code and what it drew."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=timeout), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def tiny_model(demo_root, tmp_path_factory):
    """A small model (1 epoch) and a CinC-2017-style folder of 40 synthetic recordings to score."""
    tmp = tmp_path_factory.mktemp("progress")
    folder = _small_cinc2017(demo_root, tmp / "data", n=40)
    store, _ = _process(folder, tmp / "processed")
    everything = list(range(len(store)))
    config = TrainingConfig(epochs=1, batch_size=8, base_channels=8)
    cpu = DeviceSettings(device=torch.device("cpu"))
    result = train_model(store, {"train": everything, "val": everything}, config, cpu, tmp / "models", tmp / "log.json")
    return result.best_checkpoint, folder, tmp


def _predict_command(checkpoint: Path, folder: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ecg_assets.predict",
        "--model",
        str(checkpoint),
        "--input",
        str(folder),
        "--output",
        str(output),
        "--batch-size",
        "4",
    ]


@pytest.mark.slow
def test_predict_draws_bars_on_a_terminal(tiny_model):
    checkpoint, folder, tmp = tiny_model
    code, screen = _run_in_terminal(_predict_command(checkpoint, folder, tmp / "tty.csv"), dict(os.environ))
    assert code == 0, screen
    assert CLEAR_LINE in screen
    assert re.search(r"reading \[#+\] 100% 40/40 records .* done", screen), screen
    assert re.search(r"scoring \[[#-]+\] +\d+% \d+/40 records [\d.]+ (records/s|s/record) ETA \d+:\d\d", screen), screen
    assert re.search(r"scoring \[#+\] 100% 40/40 records", screen), screen
    assert "INFO scored 40 record(s)" in screen


@pytest.mark.slow
def test_predict_writes_plain_progress_lines_into_a_pipe(tiny_model):
    checkpoint, folder, tmp = tiny_model
    result = subprocess.run(
        _predict_command(checkpoint, folder, tmp / "pipe.csv"), cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    for stage in ("reading", "scoring"):
        progress = [line for line in lines if line.startswith(f"{stage}: ")]
        tenths = [int(re.search(r"\((\d+)%", line).group(1)) // 10 for line in progress]
        assert 3 <= len(tenths) <= 10 and tenths == sorted(set(tenths)) and tenths[-1] == 10, progress
        assert progress[-1] == f"{stage}: 40/40 records (100%, {progress[-1].split(', ')[1]}, done)"
    assert "INFO scored 40 record(s), 0 not scored" in result.stderr


def _materialize_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ECG_DATA_DIR", "DAGSTER_HOME", "ECG_TRACKING")}
    return {**env, "DAGSTER_HOME": str(tmp_path / "home"), "ECG_ARTIFACTS_DIR": str(tmp_path / "artifacts")}


@pytest.mark.slow
def test_materialize_is_quiet_and_ends_with_the_summary_and_the_next_command(quick_start):
    """The output of the quick start's `ecg-assets materialize -p demo_cinc2021` (two tiny epochs) into a pipe."""
    assert QUICK_START_PARTITION == "demo_cinc2021"
    log = quick_start["stderr"]  # the fixture fails unless the command exited 0
    assert " - DEBUG - " not in log and "BetaWarning" not in log and "SupersessionWarning" not in log
    assert log.count("no CUDA device available") <= 1  # said once, not by every step
    assert "\r" not in log  # no terminal: plain lines
    assert re.search(r"processed_records: preprocessing: 200/200 records \(100%, .*, done\)", log), log
    assert re.search(r"trained_model: training: 2/2 epochs \(100%, .*, done\)", log), log
    assert "trained_model: epoch 2/2 train_loss" in log  # the epoch lines stay
    assert "Preprocessing with unified labels completed successfully: 199 of 200 records stored" in log
    assert re.search(r"Training complete! Best validation F1: \d\.\d{4}, checkpoints saved to: .*cinc2021/models", log)
    assert re.search(r"Evaluation complete! Metrics saved to: .*test_metrics\.json, F1 plot saved to: .*\.png", log)
    assert "test_metrics: done in" in log

    out = quick_start["stdout"]
    assert "demo_cinc2021\n  records     200 discovered, 199 processed, 1 failed, 0 excluded" in out
    assert re.search(r"  test        macro F1 \d\.\d{4} \(95% interval \d\.\d{4}-\d\.\d{4}\) on 20 records", out), out
    assert out.rstrip().splitlines()[-1].startswith("next: ecg-assets ui")


def test_materialize_verbose_passes_every_dagster_line_through(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(main, "run_dagster", lambda command, env, verbose: calls.append((command, verbose)) or 0)
    monkeypatch.setattr(main.summary, "summarize", lambda settings, partitions: "")
    for key, value in _materialize_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main.main(["materialize", "-p", "demo_cinc2017", "--verbose", "--config-json", "{}"]) == 0
    assert main.main(["materialize", "-p", "demo_cinc2017"]) == 0
    (loud, verbose), (quiet, default) = calls
    assert verbose is True and default is False
    assert loud[loud.index("--config-json") + 1] == "{}" and "--config-json" not in quiet
