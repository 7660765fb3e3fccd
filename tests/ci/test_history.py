"""`history`: a folder of hand-made records becomes one time-ordered table, a CSV and a plot."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.ci.history import load_history, plot_history, render_history
from bench.cli.app import cli
from bench.core.atomic import write_json
from bench.evaluation.metrics import ConfusionMatrix, evaluation_record
from bench.perf.latency import CellKey, CellResult, LatencyRun, make_row
from bench.perf.report import make_latency_record


def stamp(record: dict, time: str, commit: str) -> dict:
    record["provenance"]["utc_time"] = time
    record["provenance"]["git"] = {"commit": commit, "dirty": False}
    return record


def evaluate_at(time: str, commit: str, wrong: int) -> dict:
    confusion = ConfusionMatrix()
    labels = np.repeat(np.arange(21, dtype=np.uint8), 50).reshape(21, 50)
    preds = labels.copy()
    preds[:, :wrong] = 0
    confusion.update(labels, preds)
    return stamp(evaluation_record("seg11valid", confusion, 21), time, commit)


def latency_at(time: str, commit: str, median_ms: float) -> dict:
    rows = []
    for backend in ("torch", "tensorflow"):
        key = CellKey("fcn8s", backend, "model", 64, 64)
        samples_ns = [int(median_ms * 1e6)] * 5
        rows.append(make_row(key, CellResult(samples_ns=samples_ns), device="cpu",
                             precision="fp32", gflops=1.0))
    return stamp(make_latency_record(LatencyRun(rows, {}, "all cells", {}), {}), time,
                 commit)


@pytest.fixture
def records(tmp_path):
    # Written out of order: the table must sort by time.
    folder = tmp_path / "records"
    write_json(folder / "c.json", evaluate_at("2026-03-01T00:00:00Z", "cccccccccccc", 5))
    write_json(folder / "a.json", evaluate_at("2026-01-01T00:00:00Z", "aaaaaaaaaaaa", 10))
    write_json(folder / "sub" / "b.json", latency_at("2026-02-01T00:00:00Z", "bbbbbbbbbbbb",
                                                     40.0))
    (folder / "notes.json").write_text('{"not": "a record"}')  # skipped
    return folder


def test_rows_are_records_sorted_by_time_with_a_column_per_cell(records):
    frame = load_history(records)
    assert list(frame["commit"]) == ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"]
    assert list(frame["kind"]) == ["evaluate", "latency", "evaluate"]
    assert list(frame["file"]) == ["a.json", "sub/b.json", "c.json"]
    iou = [c for c in frame.columns if c.startswith("mean_iou")]
    p50 = sorted(c for c in frame.columns if c.startswith("p50_ms"))
    assert len(iou) == 1 and len(p50) == 2  # one per backend
    assert frame[iou[0]][0] < frame[iou[0]][2]  # fewer wrong pixels later: mIU went up
    assert math.isnan(frame[iou[0]][1])  # the latency record has no mIU
    assert frame[p50[0]][1] == pytest.approx(40.0)


def test_render_formats(records):
    frame = load_history(records)
    github = render_history(frame, "github")
    assert github.startswith("### evaluate: 2 records (seg11valid)") and "| aaaaaaaa |" in github
    csv = render_history(frame, "csv")
    assert pd.read_csv(io.StringIO(csv)).shape == frame.shape


def test_history_command_writes_csv_and_plot(records, tmp_path):
    csv_path, png = tmp_path / "out" / "history.csv", tmp_path / "out" / "history.png"
    result = CliRunner().invoke(cli, ["history", str(records), "--csv", str(csv_path), "--plot",
                                      str(png), "--metric", "mean_iou", "--metric", "p50_ms"])
    assert result.exit_code == 0, result.output
    assert "cccccccc" in result.output
    assert csv_path.read_text().startswith("time,commit,kind,file,dirty")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_records_exits_2(tmp_path):
    (tmp_path / "x.json").write_text("[]")
    result = CliRunner().invoke(cli, ["history", str(tmp_path)])
    assert result.exit_code == 2
    assert "no fcn-bench or pytest-benchmark records" in result.output


def latency_matrix_at(time: str, commit: str, median_ms: float, dirty: bool) -> dict:
    """Every variant x backend at 128x128: the record that made a 700-character table."""
    from bench.model.spec import VARIANTS

    rows = [make_row(CellKey(variant, backend, "model", 128, 128), CellResult(
        samples_ns=[int(median_ms * 1e6)] * 5), device="cpu", precision="fp32", gflops=1.0)
        for variant in VARIANTS for backend in ("torch", "tensorflow")]
    record = stamp(make_latency_record(LatencyRun(rows, {}, "all cells", {}), {}), time, commit)
    record["provenance"]["git"]["dirty"] = dirty
    return record


def test_mixed_records_give_one_narrow_table_per_kind_with_a_legend(tmp_path):
    """Issue 11.6: a folder of mixed records made one 700-character table with headers like
    `p50_ms [fcn32s/tensorflow/cpu/fp32/model/128x128/1/no/no]`."""
    write_json(tmp_path / "e.json", evaluate_at("2026-01-01T00:00:00Z", "aaaaaaaaaaaa", 10))
    write_json(tmp_path / "l1.json", latency_matrix_at("2026-01-02T10:00:00Z", "bbbbbbbbbbbb",
                                                       40.0, dirty=False))
    write_json(tmp_path / "l2.json", latency_matrix_at("2026-01-02T10:00:30Z", "bbbbbbbbbbbb",
                                                       41.0, dirty=True))
    frame = load_history(tmp_path, ("mean_iou", "pixel_accuracy", "p50_ms", "p90_ms"))
    for fmt in ("plain", "github"):
        text = render_history(frame, fmt)
        assert max(len(line) for line in text.splitlines()) <= 120
        assert text.count("evaluate: 1 record (seg11valid)") == 1
        assert text.count("latency: 2 records (cpu, fp32, model, 128x128, batch 1") == 1
        assert "A = fcn16s/tensorflow," in text and "H = fcn8s/torch" in text
        assert "p50 ms A" in text and "[" not in text  # short labels, no identity in headers
        # Two records in one minute: the seconds tell them apart; * marks the dirty tree.
        assert "2026-01-02 10:00:30" in text and "bbbbbbbb*" in text
        assert "* after a commit: made with uncommitted changes" in text
    # The plot gives each record its own x position, labelled with time and commit.
    png = plot_history(frame, tmp_path / "out" / "h.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_plot_ticks_and_markers_tell_records_and_backends_apart(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    write_json(tmp_path / "l1.json", latency_matrix_at("2026-01-02T10:00:00Z", "bbbbbbbbbbbb",
                                                       40.0, dirty=False))
    write_json(tmp_path / "l2.json", latency_matrix_at("2026-01-02T10:00:30Z", "bbbbbbbbbbbb",
                                                       41.0, dirty=True))
    frame = load_history(tmp_path, ("p50_ms",))
    captured = {}
    monkeypatch.setattr(plt, "close", lambda figure: captured.setdefault("figure", figure))
    plot_history(frame, tmp_path / "h.png")
    (axis,) = captured["figure"].axes
    ticks = [t.get_text() for t in axis.get_xticklabels()]
    assert ticks == ["01-02 10:00:00\nbbbbbbbb", "01-02 10:00:30\nbbbbbbbb*"]
    markers = {line.get_label().split("/")[1].rstrip("]"): line.get_marker()
               for line in axis.get_lines()}
    assert markers == {"torch": "o", "tensorflow": "s"}
    assert all(list(line.get_xdata()) == [0, 1] for line in axis.get_lines())
