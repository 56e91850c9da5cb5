"""Benchmark loaders on local fixtures: SRT parsing, subtitles of sampled frames, VideoMME rows, the data module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from longvila_r1.data.dataset import FrameSampling
from longvila_r1.data.records import RecordError, VideoQARecord, save_records
from longvila_r1.data.video import read_video, sampled_timestamps
from longvila_r1.data.video_writer import write_video
from longvila_r1.evaluation import BenchmarkDataModule
from longvila_r1.evaluation.benchmarks import load_benchmark, with_ids
from longvila_r1.evaluation.subtitles import SUBTITLE_HEADER, SubtitleLine, add_subtitles, parse_srt, subtitles_at
from longvila_r1.evaluation.videomme import load_videomme

# 16 frames at 4 fps: num_frames=4 samples the centres of four 1 s segments, at 0.5, 1.5, 2.5 and 3.5 s.
FRAMES, FPS = 16, 4.0
SRT = (
    "\ufeff1\r\n00:00:00,400 --> 00:00:00,600\r\nThe <i>red</i> cube\r\nenters.\r\n\r\n"
    "2\r\n00:00:01,000 --> 00:00:01,200\r\nBetween frames.\r\n\r\n"
    "3\r\n00:00:03,400 --> 00:00:03,700\r\nIt leaves.\r\n"
)
ROWS = [
    {
        "video_id": "001",
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=vidA",
        "videoID": "vidA",
        "question_id": "001-1",
        "task_type": "Counting Problem",
        "question": "How many cubes enter?",
        "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."],
        "answer": "A",
    },
    {
        "video_id": "002",
        "duration": "long",
        "domain": "Sports",
        "sub_category": "Football",
        "url": "https://www.youtube.com/watch?v=vidB",
        "videoID": "vidB",
        "question_id": "002-1",
        "task_type": "Action Recognition",
        "question": "What does the player do?",
        "options": ["A. Runs.", "B. Kicks.", "C. Falls.", "D. Waves."],
        "answer": "B",
    },
]


@pytest.fixture(scope="module")
def videomme_dir(tmp_path_factory) -> Path:
    """VideoMME laid out as published: questions, data/<videoID>.mp4, subtitle/<videoID>.srt (vidA only)."""
    root = tmp_path_factory.mktemp("videomme")
    rng = np.random.default_rng(0)
    for video_id in ("vidA", "vidB"):
        write_video(root / "data" / f"{video_id}.mp4", rng.integers(0, 255, (FRAMES, 32, 32, 3), np.uint8), fps=FPS)
    (root / "subtitle").mkdir()
    (root / "subtitle" / "vidA.srt").write_text(SRT, encoding="utf-8", newline="")
    (root / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), root / "test.parquet")
    return root


def test_parse_srt_tolerates_real_world_files() -> None:
    lines = parse_srt(SRT)
    assert lines == [
        SubtitleLine(0.4, 0.6, "The red cube enters."),
        SubtitleLine(1.0, 1.2, "Between frames."),
        SubtitleLine(3.4, 3.7, "It leaves."),
    ]
    messy = "00:00:02.5 --> 00:00:03\n{\\an8}top\n7\n1:02:03,004 --> 1:02:04,000\nlater\n\nnot a cue\n\n9\n"
    assert parse_srt(messy) == [SubtitleLine(2.5, 3.0, "top"), SubtitleLine(3723.004, 3724.0, "later")]
    assert parse_srt("") == []


def test_subtitles_at_frame_times() -> None:
    lines = parse_srt(SRT)
    assert [line.text for line in subtitles_at(lines, [3.5, 0.5, 2.5])] == ["The red cube enters.", "It leaves."]
    assert len(subtitles_at(lines, [0.5, 1.5], window_s=0.5)) == 2  # a 1 s span per frame reaches the middle cue
    assert subtitles_at(lines, []) == []
    with pytest.raises(ValueError, match="window_s"):
        subtitles_at(lines, [1.0], window_s=-1)


@pytest.mark.parametrize("name", ["test.jsonl", "test.parquet"])
def test_videomme_rows_become_records(videomme_dir: Path, name: str) -> None:
    records = load_videomme(videomme_dir / name, video_root=videomme_dir / "data", check_videos=True).records
    first = records[0]
    assert (first.id, first.answer, first.options, first.category) == (
        "001-1",
        "A",
        ("One.", "Two.", "Three.", "Four."),
        None,
    )
    assert first.video_path == (videomme_dir / "data" / "vidA.mp4").resolve()
    assert first.extra["duration_label"] == "short" and first.extra["task_type"] == "Counting Problem"
    assert "duration" not in first.extra and first.duration is None
    assert records[1].extra["duration_label"] == "long"


def test_videomme_errors_name_the_row(tmp_path: Path) -> None:
    bad = [dict(ROWS[0], duration="epic"), {k: v for k, v in ROWS[1].items() if k != "answer"}, ROWS[1]]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in bad))
    with pytest.raises(RecordError, match=r"bad.jsonl line 1, field 'duration': expected one of"):
        load_videomme(path)
    report = load_benchmark("videomme", path, on_error="skip")
    assert [r.id for r in report.records] == ["002-1"] and report.num_skipped == 2
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(RecordError, match=r"line 1, field 'videos': video_pattern '\{youtube\}.mp4' needs"):
        load_videomme(good, video_pattern="{youtube}.mp4")


def test_load_benchmark_and_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="benchmark must be one of"):
        load_benchmark("mvbench", tmp_path / "x.jsonl")
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(dict(ROWS[0], question_id=None)) + "\n")
    records = load_videomme(path).records
    assert [r.id for r in with_ids(records, "q")] == ["001-1", "q-1"]
    with pytest.raises(ValueError, match="duplicate question id"):
        with_ids([records[0], records[0]], "q")


def test_sampled_timestamps_match_the_decoded_frames(videomme_dir: Path) -> None:
    video = videomme_dir / "data" / "vidA.mp4"
    for kwargs in ({"num_frames": 4}, {"fps": 2.0}, {"fps": 4.0, "max_frames": 3}):
        expected = read_video(video, backend="pyav", **kwargs).timestamps.numpy()
        assert np.allclose(sampled_timestamps(video, **kwargs), expected), kwargs
    assert np.allclose(sampled_timestamps(video, num_frames=4), [0.5, 1.5, 2.5, 3.5])


def test_add_subtitles_follows_the_sampled_frames(videomme_dir: Path) -> None:
    records = load_videomme(videomme_dir / "test.jsonl", video_root=videomme_dir / "data").records
    out = add_subtitles(records, videomme_dir / "subtitle", FrameSampling(num_frames=4))
    assert out[0].problem == f"{SUBTITLE_HEADER}\nThe red cube enters.\nIt leaves.\nHow many cubes enter?"
    assert out[1] == records[1]  # no subtitle file: the question is unchanged
    fewer = add_subtitles(records, videomme_dir / "subtitle", FrameSampling(num_frames=1))  # one frame, at 2 s
    assert fewer[0].problem == records[0].problem
    with pytest.raises(ValueError, match="subtitle_pattern"):
        add_subtitles(records, videomme_dir / "subtitle", FrameSampling(4), subtitle_pattern="{nope}.srt")


def test_benchmark_data_module_serves_videomme_with_subtitles(videomme_dir: Path) -> None:
    dm = BenchmarkDataModule(
        benchmark="videomme",
        data_dir=str(videomme_dir),
        eval_file="test.jsonl",
        video_dir=str(videomme_dir / "data"),
        subtitle_dir=str(videomme_dir / "subtitle"),
        num_frames=4,
        eval_batch_size=2,
    )
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["ids"] == ["001-1", "002-1"]
    assert batch["durations"] == ["short", "long"]
    prompt = dm.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert SUBTITLE_HEADER in prompt and "It leaves." in prompt and "How many cubes enter?" in prompt
    assert SUBTITLE_HEADER not in dm.tokenizer.decode(batch["input_ids"][1], skip_special_tokens=True)


def test_benchmark_data_module_names_every_longvideo_reason_question(videomme_dir: Path, tmp_path: Path) -> None:
    records = with_ids(load_videomme(videomme_dir / "test.jsonl", video_root=videomme_dir / "data").records, "x")
    unnamed = [VideoQARecord(r.problem, r.answer, str(r.video_path), category="temporal") for r in records]
    save_records(unnamed, tmp_path / "eval.jsonl")
    dm = BenchmarkDataModule(data_dir=str(tmp_path), num_frames=2, max_eval_samples=1)
    dm.setup("validate")
    assert [r.id for r in dm.eval_set.records] == ["eval-0"]
    with pytest.raises(ValueError, match="benchmark must be one of"):
        BenchmarkDataModule(benchmark="mvbench")
