"""``lpg plot``: several runs' logged curves on one figure and in one CSV; bad input is one line and writes nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lpg.cli import main
from lpg.commands.plot import run_curves
from lpg.errors import InvalidConfigError


def fake_run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def runs(tmp_path):
    a = fake_run(
        tmp_path / "a2c", [{"step": 10, "episode_return": 0.5}, {"step": 20, "episode_return": 0.75, "wall_s": 3.0}]
    )
    b = fake_run(
        tmp_path / "lpg",
        [
            {"step": 10, "entropy": 1.0},  # no episode_return yet: skipped
            {"step": 20, "episode_return": -1.0},
            {"step": 30, "episode_return": float("nan")},  # not finite: skipped
            {"step": 40, "episode_return": 2.0, "flag": True},
        ],
    )
    return a, b


def test_points_are_the_rows_logging_both_quantities(runs):
    a, b = runs
    assert run_curves((str(a), str(b)), "step", "episode_return") == [
        [(10.0, 0.5), (20.0, 0.75)],
        [(20.0, -1.0), (40.0, 2.0)],
    ]
    assert run_curves((str(a),), "wall_s", "episode_return") == [[(3.0, 0.75)]]


def test_plot_writes_the_figure_and_the_csv_and_prints_each_run(runs, tmp_path, capsys):
    a, b = runs
    figure, table = tmp_path / "out" / "curves.png", tmp_path / "out" / "points.csv"
    code = main(["plot", str(a), str(b), "--labels", "A2C", "LPG", "--out", str(figure), "--csv", str(table)])
    out = capsys.readouterr().out
    assert code == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with table.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run", "label", "step", "episode_return"]
    assert [(r[1], float(r[2]), float(r[3])) for r in rows[1:]] == [
        ("A2C", 10.0, 0.5),
        ("A2C", 20.0, 0.75),
        ("LPG", 20.0, -1.0),
        ("LPG", 40.0, 2.0),
    ]
    lines = out.splitlines()
    assert lines[0].split() == [
        "A2C",
        "2",
        "points",
        "last",
        "step",
        "20:",
        "episode_return",
        "0.75",
        "(highest",
        "0.75)",
    ]
    assert lines[1].split() == ["LPG", "2", "points", "last", "step", "40:", "episode_return", "2", "(highest", "2)"]
    assert not list(table.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    "extra, phrase",
    [
        (["--y", "nope"], "logs no 'step' with 'nope'; it logs: episode_return, step, wall_s"),
        (["--labels", "one"], "--labels gives 1 label(s) for 2 RUN folder(s)"),
        (["--csv", "SAME"], "--csv and --out name the same file"),
        (["MISSING"], "holds no metrics.jsonl"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys, extra, phrase):
    a, b = runs
    figure = tmp_path / "new" / "curves.png"
    extra = [str(figure) if e == "SAME" else str(tmp_path / "missing") if e == "MISSING" else e for e in extra]
    code = main(["plot", str(a), str(b), *extra, "--out", str(figure)])  # MISSING: a third RUN folder
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lpg: error: ") and phrase in err[0], err
    assert not (tmp_path / "new").exists()


def test_run_curves_raises_invalid_config_error(tmp_path):
    with pytest.raises(InvalidConfigError, match=r"holds no metrics\.jsonl"):
        run_curves((str(tmp_path),), "step", "episode_return")


def test_a_record_of_results_is_read_from_its_curve_csv(tmp_path):
    # a folder without metrics.jsonl but with a curve.csv (the records in results/) plots like a run folder
    record = tmp_path / "record"
    record.mkdir()
    (record / "curve.csv").write_text("frames,score_last20,note\n1000,-21,a\n2000,,b\n3000,-19.5,c\n")
    assert run_curves((str(record),), "frames", "score_last20") == [[(1000.0, -21.0), (3000.0, -19.5)]]
    with pytest.raises(InvalidConfigError, match="it logs: frames, score_last20"):
        run_curves((str(record),), "step", "score_last20")


def test_the_shipped_pong_records_plot_together(tmp_path, capsys):
    results = Path(__file__).resolve().parents[1] / "results"
    runs = [str(results / name) for name in ("pong_a2c_10M", "pong_frodo_10M", "pong_stacx_3M")]
    figure = tmp_path / "pong.png"
    assert main(["plot", *runs, "--x", "frames", "--y", "score_last20", "--out", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "pong_frodo_10M" in out and "pong_stacx_3M" in out and figure.exists()
    # the STACX record's last row (3M frames, score of the last 20 games -19.85; README "Atari learning")
    assert "last frames 3e+06: score_last20 -19.85" in out
    assert run_curves((runs[2],), "frames", "score_last20")[0][-1] == (3000000.0, -19.85)
