"""Synthetic LongVideo-Reason generator (longvila_r1.data.synth): files, determinism, balance, evidence."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from longvila_r1.data.records import VideoQARecord
from longvila_r1.data.synth import (
    CATEGORIES,
    TEMPLATES,
    SynthSummary,
    answer_text_baseline,
    determinable_fraction,
    evidence_coverage,
    generate_dataset,
    iter_corpus_text,
    longest_option_rate,
    question_only_baseline,
    video_records,
)
from longvila_r1.data.synth.events import simulate_scene
from longvila_r1.data.synth.generator import render_video, split_of, synth_settings
from longvila_r1.data.synth.render import sprite
from longvila_r1.data.synth.scene import SHAPES

SPLITS = ("train", "val", "eval")
FIELDS = ("id", "videos", "problem", "options", "answer", "reasoning", "category", "duration", "difficulty")
FIELDS += ("template", "evidence")
TINY = {"num_videos": 6, "frames": 32, "seed": 5, "difficulty": "hard", "split_fractions": (0.5, 0.25, 0.25)}


def records_by_split(num_videos: int, difficulty: str, fractions=(0.5, 0.0, 0.5), frames: int = 128) -> dict:
    """Question records of a set without rendering (the same records ``generate_dataset`` writes)."""
    settings = synth_settings(num_videos, frames, 0, difficulty, 8.0, 64, 4, fractions)
    splits = {split: [] for split in SPLITS}
    for index in range(num_videos):
        splits[split_of(index, settings["split_sizes"])] += video_records(index, settings)[1]
    return splits


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "a"
    return out, generate_dataset(out, progress=False, **TINY)


@pytest.fixture(scope="module", params=["easy", "hard"])
def large(request) -> dict:
    return records_by_split(300, request.param)


# -- files and determinism ------------------------------------------------------------------------------------
def test_files_written_and_summary(tiny_set):
    out, summary = tiny_set
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.jsonl",
        "synth_config.json",
        "train.jsonl",
        "val.jsonl",
        "videos",
    ]
    assert len(list((out / "videos").glob("vid_*.mp4"))) == 6
    assert summary.videos == {"train": 3, "val": 2, "eval": 1} and summary.duration == 4.0
    assert summary.questions == {split: len(read_jsonl(out / f"{split}.jsonl")) for split in SPLITS}
    table = summary.format_table()
    assert all(word in table for word in (*SPLITS, *CATEGORIES, "total", "32 frames per video"))
    config = json.loads((out / "synth_config.json").read_text())
    assert config["seed"] == 5 and config["frames"] == 32 and config["difficulty"] == "hard"


def test_same_seed_is_identical_also_with_workers(tiny_set, tmp_path):
    out, _ = tiny_set
    again = tmp_path / "b"
    generate_dataset(again, progress=False, workers=2, **TINY)
    for name in ("train.jsonl", "val.jsonl", "eval.jsonl", "synth_config.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    for index in (0, 5):
        name = f"videos/vid_{index:05d}.mp4"
        np.testing.assert_array_equal(decode(out / name), decode(again / name))


def test_different_seed_differs(tiny_set, tmp_path):
    out, _ = tiny_set
    generate_dataset(tmp_path, progress=False, **{**TINY, "seed": 6})
    assert (out / "train.jsonl").read_bytes() != (tmp_path / "train.jsonl").read_bytes()
    assert not np.array_equal(decode(out / "videos/vid_00000.mp4"), decode(tmp_path / "videos/vid_00000.mp4"))


def test_videos_decode_to_requested_frames_and_match_the_render(tiny_set):
    out, _ = tiny_set
    settings = synth_settings(6, 32, 5, "hard", 8.0, 64, 4, (0.5, 0.25, 0.25))
    frames = decode(out / "videos/vid_00002.mp4")
    assert frames.shape == (32, 64, 64, 3)
    rendered = render_video(2, settings)[1]
    # H.264 keeps the flat synthetic frames close to the render: colours stay recognisable.
    assert np.abs(frames.astype(int) - rendered.astype(int)).mean() < 4.0


def test_records_fields_and_values(tiny_set):
    out, _ = tiny_set
    seen_videos = {}
    for split in SPLITS:
        for record in read_jsonl(out / f"{split}.jsonl"):
            assert tuple(record) == FIELDS
            VideoQARecord.from_dict(record, video_root=out)  # the project's own schema accepts it
            assert (out / record["videos"]).is_file()
            assert record["category"] in CATEGORIES and record["difficulty"] == "hard"
            assert record["template"] in {t.__name__ for ts in TEMPLATES["hard"].values() for t in ts}
            assert len(record["options"]) == 4 == len(set(record["options"]))
            assert not any(re.match(r"^[A-D][.)]", option) for option in record["options"])
            assert record["answer"] in "ABCD" and record["duration"] == 4.0
            assert record["reasoning"].startswith("<think>")
            assert record["reasoning"].endswith(
                f"So the answer is {record['answer']}.</think><answer>{record['answer']}</answer>"
            )
            assert re.search(r"\b\d+:\d\d\b", record["reasoning"])
            # The option check marks exactly the correct option, quoted verbatim before it.
            correct = record["options"]["ABCD".index(record["answer"])]
            assert f'That matches the option "{correct}".' in record["reasoning"]
            checks = re.findall(r"([A-D])\. ([^:]+): (yes|no)\.", record["reasoning"])
            assert [(letter, text) for letter, text, _ in checks] == list(zip("ABCD", record["options"], strict=True))
            assert [letter for letter, _, mark in checks if mark == "yes"] == [record["answer"]]
            assert all(0 <= start < end <= 4.0 for start, end in record["evidence"]) and record["evidence"]
            # A video belongs to one split only.
            assert seen_videos.setdefault(record["videos"], split) == split
    assert len({record["id"] for split in SPLITS for record in read_jsonl(out / f"{split}.jsonl")}) == 24


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("num_videos", 0, "num_videos must be an integer >= 1"),
        ("frames", 8, "frames must be an integer >= 32"),
        ("difficulty", "medium", "difficulty must be one of"),
        ("fps", 0, "fps must be a positive number"),
        ("size", 63, "size must be even"),
        ("questions_per_video", 0, "questions_per_video must be an integer >= 1"),
        ("split_fractions", (0.5, 0.5, 0.5), "split_fractions must be 3 non-negative numbers"),
        ("workers", -1, "workers must be an integer >= 0"),
    ],
)
def test_arguments_aresynth_settings(tmp_path, argument, value, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, **{"num_videos": 1, "progress": False, argument: value})
    assert not (tmp_path / "train.jsonl").exists()


# -- balance and shortcuts ------------------------------------------------------------------------------------
def test_letters_balanced(large):
    letters = Counter(record["answer"] for split in SPLITS for record in large[split])
    total = sum(letters.values())
    assert total >= 1000
    assert all(0.2 <= letters[letter] / total <= 0.3 for letter in "ABCD"), letters


def test_question_only_and_option_text_baselines_near_chance(large):
    assert question_only_baseline(large["train"], large["eval"]) < 0.32
    assert answer_text_baseline(large["train"], large["eval"]) < 0.35
    assert longest_option_rate(large["train"] + large["eval"]) < 0.32


def test_every_category_in_every_split():
    splits = records_by_split(40, "hard", fractions=(0.8, 0.1, 0.1))
    for split in SPLITS:
        counts = Counter(record["category"] for record in splits[split])
        assert set(counts) == set(CATEGORIES) and min(counts.values()) >= 4, (split, counts)


def test_all_templates_occur_and_counts_spread():
    records = records_by_split(200, "hard")["train"] + records_by_split(200, "easy")["train"]
    templates = Counter(record["template"] for record in records)
    assert set(templates) == {t.__name__ for ts in TEMPLATES["hard"].values() for t in ts} | {
        t.__name__ for ts in TEMPLATES["easy"].values() for t in ts
    }
    counts = Counter(r["options"]["ABCD".index(r["answer"])] for r in records if r["template"].startswith("count"))
    assert max(counts.values()) / sum(counts.values()) < 0.4, counts  # no favourite answer value


# -- evidence and frames --------------------------------------------------------------------------------------
def test_evidence_coverage_semantics():
    # Samples are the pipeline's uniform_indices: 4 of 128 -> 16, 48, 80, 112; 16 of 128 -> 4, 12, 20, ...
    both = {"evidence": [[1.5, 2.0], [9.5, 10.0]]}  # frames 12-15 and 76-79: every 16-frame sample hits both
    assert [evidence_coverage(both, n, total_frames=128, fps=8.0) for n in (4, 16, 128)] == [False, True, True]
    between = {"evidence": [[0.625, 1.5]]}  # frames 5-11 lie between the 16-frame samples 4 and 12
    assert [evidence_coverage(between, n, total_frames=128, fps=8.0) for n in (16, 32)] == [False, True]


def test_hard_needs_many_frames_easy_does_not():
    hard = records_by_split(200, "hard")["eval"]
    fractions = [determinable_fraction(hard, n, total_frames=128, fps=8.0) for n in (4, 16, 64, 128)]
    assert fractions[0] < fractions[1] < fractions[2] <= fractions[3] == 1.0, fractions
    assert fractions[0] < 0.3
    easy = records_by_split(200, "easy")["eval"]
    assert determinable_fraction(easy, 16, total_frames=128, fps=8.0) >= 0.99


def test_longer_videos_hold_more_events():
    short = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="hard")
    long = simulate_scene(np.random.default_rng([0, 1]), frames=1024, fps=8.0, size=64, difficulty="hard")
    assert len(long.events) > 4 * len(short.events)
    starts = np.array([event.start for event in long.events if event.start > 0]) / 1024
    assert np.histogram(starts, bins=4, range=(0, 1))[0].min() > 0.15 * len(starts)  # spread over the timeline


def test_shapes_stay_distinct_when_small():
    for size in (10, 12, 16):
        masks = [sprite(shape, size) for shape in SHAPES]
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                assert (masks[i] != masks[j]).sum() >= size, (SHAPES[i], SHAPES[j], size)


def test_corpus_text_matches_records_without_rendering(tmp_path):
    texts = list(iter_corpus_text(seed=0, num_videos=3, difficulty="easy"))
    settings = synth_settings(3, 128, 0, "easy", 8.0, 64, 4, (0.8, 0.1, 0.1))
    first = video_records(0, settings)[1][0]
    assert texts[:6] == [first["problem"], *first["options"], first["reasoning"]]
    both = list(iter_corpus_text(seed=0, num_videos=3))
    assert len(both) == 2 * len(texts) and any("popped up" in text for text in both)
    assert texts == list(iter_corpus_text(seed=0, num_videos=3, difficulty="easy"))
