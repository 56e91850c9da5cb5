"""LongVideoReasonDataModule: batches, collation of mixed videos, skip-and-count, resumable sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longvila_r1.data.collate import VideoBatchCollator, pad_sequences
from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.data.dataset import LongVideoReasonDataset, SampleError, SkippedSample
from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.qwen_vl_prompt import IGNORE_INDEX
from longvila_r1.data.records import load_records
from longvila_r1.data.sampler import ResumableSampler
from longvila_r1.data.video_writer import write_video

# (frames, height, width) per video: different lengths and sizes in one batch.
SHAPES = [(24, 64, 64), (9, 48, 80), (40, 64, 64), (16, 96, 64), (12, 64, 64), (30, 64, 64)]


def _record(i: int, video: str, category: str = "temporal") -> dict:
    return {
        "id": f"q{i}",
        "videos": video,
        "problem": f"Which object appeared first in clip {i}?",
        "options": ["red square", "blue circle", "green triangle", "yellow star"],
        "answer": "ABCD"[i % 4],
        "reasoning": f"<think>At 0:0{i} the red square appears.</think><answer>{'ABCD'[i % 4]}</answer>",
        "category": category,
    }


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for i, (t, h, w) in enumerate(SHAPES):
        write_video(tmp_path / f"videos/v{i}.mp4", rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8), fps=8)
        records.append(_record(i, f"videos/v{i}.mp4", ["temporal", "spatial", "goal_purpose"][i % 3]))
    (tmp_path / "videos/broken.mp4").write_bytes(b"not a video at all")
    lines = [json.dumps(r) for r in records]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    bad = [*lines[:2], json.dumps(_record(9, "videos/broken.mp4")), "{not json", *lines[2:4]]
    (tmp_path / "eval.jsonl").write_text("\n".join(bad) + "\n")
    return tmp_path


@pytest.fixture(scope="module")
def processing():
    return load_model_processing("tiny")


def test_sft_batch_mixes_lengths_and_sizes(data_dir, processing):
    tokenizer, processor = processing
    dataset = LongVideoReasonDataset(load_records(data_dir / "train.jsonl"), tokenizer, processor=processor)
    batch = VideoBatchCollator(tokenizer.pad_token_id)([dataset[i] for i in range(4)])
    grids = batch["video_grid_thw"]
    assert batch["input_ids"].shape == batch["labels"].shape == batch["mm_token_type_ids"].shape
    assert grids.shape == (4, 3) and grids[:, 0].tolist() == [8, 8, 8, 8]  # 16 frames -> 8 temporal groups
    assert batch["pixel_values_videos"].shape[0] == int(grids.prod(dim=1).sum())
    video_tokens = (batch["mm_token_type_ids"] == 2).sum(dim=1)
    assert video_tokens.tolist() == (grids.prod(dim=1) // 4).tolist()
    # Labels cover only the response: no prompt or video token has a label.
    assert (batch["labels"][batch["mm_token_type_ids"] == 2] == IGNORE_INDEX).all()
    for row, start in enumerate(batch["prompt_lengths"].tolist()):
        assert (batch["labels"][row, :start] == IGNORE_INDEX).all()
        assert (batch["labels"][row, start:] != IGNORE_INDEX).sum() > 5


def test_rl_samples_end_with_assistant_header(data_dir, processing):
    tokenizer, processor = processing
    dataset = LongVideoReasonDataset(load_records(data_dir / "train.jsonl"), tokenizer, task="rl", processor=processor)
    sample = dataset[1]
    assert sample.labels is None and sample.prompt_length == sample.input_ids.numel()
    assert tokenizer.decode(sample.input_ids).endswith("<|im_start|>assistant\n")
    batch = VideoBatchCollator(tokenizer.pad_token_id, padding_side="left")([dataset[0], dataset[1]])
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding: every prompt ends at the last column


def test_broken_video_raises_with_file_or_is_skipped(data_dir, processing):
    tokenizer, processor = processing
    records = load_records(data_dir / "eval.jsonl", on_error="skip")
    assert len(records) == 5  # the "{not json" line is dropped
    strict = LongVideoReasonDataset(records, tokenizer, processor=processor)
    with pytest.raises(SampleError, match=r"q9.*broken\.mp4"):
        strict[2]
    lenient = LongVideoReasonDataset(records, tokenizer, processor=processor, on_error="skip")
    assert isinstance(lenient[2], SkippedSample)
    batch = VideoBatchCollator(tokenizer.pad_token_id)([lenient[i] for i in range(4)])
    assert batch["size"] == 3 and len(batch["skipped"]) == 1 and "broken.mp4" in batch["skipped"][0]


def test_too_long_prompt_is_an_error(data_dir, processing):
    tokenizer, processor = processing
    records = load_records(data_dir / "train.jsonl")
    dataset = LongVideoReasonDataset(records, tokenizer, processor=processor, max_length=20)
    with pytest.raises(SampleError, match="max_length=20"):
        dataset[0]


def test_datamodule_counts_skips_and_serves_eval(data_dir):
    dm = LongVideoReasonDataModule(data_dir=str(data_dir), on_error="skip", batch_size=2, eval_batch_size=3)
    dm.setup("fit")
    assert dm.skipped["records"] == 1
    for batch in dm.val_dataloader():
        dm.on_after_batch_transfer(batch, 0)
    assert dm.skipped["samples"] == 1
    assert len(dm.train_dataloader()) == 3
    train = next(iter(dm.train_dataloader()))
    assert "labels" in train and train["size"] == 2


def test_datamodule_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="task must be one of"):
        LongVideoReasonDataModule(task="dpo")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        LongVideoReasonDataModule(batch_size=0)
    dm = LongVideoReasonDataModule(data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="longvila-r1 data synth"):
        dm.setup("fit")


def test_sampler_resumes_at_the_exact_sample_and_shards():
    full = list(ResumableSampler(11, seed=3))
    resumed = ResumableSampler(11, seed=3)
    resumed.load_state_dict({"epoch": 0, "consumed": 4})
    assert len(resumed) == 11 and list(resumed) == full[4:]
    assert list(resumed) == full  # the skip applies to one epoch only
    shards = [list(ResumableSampler(11, seed=3, num_replicas=2, rank=r)) for r in range(2)]
    assert sorted(set(shards[0]) | set(shards[1])) == list(range(11))
    next_epoch = ResumableSampler(11, seed=3)
    next_epoch.set_epoch(1)
    assert list(next_epoch) != full
    moved_on = ResumableSampler(11, seed=3)
    moved_on.load_state_dict({"epoch": 0, "consumed": 4})
    moved_on.set_epoch(1)  # the trainer resumed into the next epoch: it starts from its beginning
    assert list(moved_on) == list(next_epoch)


def test_pad_sequences_sides():
    seqs = [torch.tensor([1, 2, 3]), torch.tensor([4])]
    assert pad_sequences(seqs, 0, "right").tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_sequences(seqs, 0, "left").tolist() == [[1, 2, 3], [0, 0, 4]]
