"""Stage 0's data: per-token perception targets from the scenes, the dataset and the data module."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.data.dataset import SkippedSample
from longvila_r1.data.perception import (
    PerceptionBatchCollator,
    SyntheticPerceptionDataset,
    WithPerceptionTargets,
    load_synth_settings,
    unique_videos,
)
from longvila_r1.data.perception_datamodule import SyntheticPerceptionDataModule
from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.records import load_records
from longvila_r1.data.synth.generator import render_video, synth_settings, video_records
from longvila_r1.data.synth.perception import IGNORE_INDEX, PerceptionTargets, perception_targets
from longvila_r1.data.synth.scene import COLOUR_IDS, COLOUR_NAMES, PALETTE, SHAPES, Scene


def _scene() -> Scene:
    scene = Scene(frames=8, fps=8.0, size=64, difficulty="easy")
    scene.add_object("blue", "square", size=12, x=10.0, y=50.0, start=0)  # bottom left, all along
    scene.add_object("green", "triangle", size=16, x=40.0, y=20.0, start=0)  # top right, all along
    scene.add_object("yellow", "circle", size=8, x=56.0, y=8.0, start=4)  # joins the top right at frame 4
    scene.objects[1].flash[2:4] = True
    return scene


def test_targets_of_hand_placed_objects():
    # 4 frames in 2 temporal groups (frames 0 and 4 are read), 2x2 cells of 32 px, raster order per group.
    targets = perception_targets(_scene(), [0, 2, 4, 6], torch.tensor([2, 4, 4]), merge_size=2, temporal_patch_size=2)
    assert targets.count.tolist() == [0, 1, 1, 0, 0, 2, 1, 0]
    # Group 0: the green triangle alone top right, the blue square alone bottom left.
    assert targets.colour[1].item() == COLOUR_IDS["green"] and targets.shape[1].item() == SHAPES.index("triangle")
    assert targets.colour[2].item() == COLOUR_IDS["blue"] and targets.shape[2].item() == SHAPES.index("square")
    assert targets.offset[1].tolist() == [0.25, 0.625] and targets.offset[2].tolist() == [0.3125, 0.5625]
    assert targets.size[1].item() == 0.5 and targets.size[2].item() == 0.375
    # Group 1: two objects top right -> counted, but no single object's attributes there.
    assert targets.colour[5].item() == IGNORE_INDEX and targets.shape[5].item() == IGNORE_INDEX
    assert math.isnan(targets.size[5].item()) and torch.isnan(targets.offset[5]).all()
    assert targets.single.tolist() == [False, True, True, False, False, False, True, False]
    assert not torch.isnan(targets.offset[targets.single]).any()


def test_a_flashing_object_reads_as_the_flash_colour():
    targets = perception_targets(_scene(), [2, 3], torch.tensor([1, 4, 4]), merge_size=2, temporal_patch_size=2)
    assert targets.colour[1].item() == COLOUR_IDS["white"]


def test_grid_that_does_not_match_the_frames_is_an_error():
    with pytest.raises(ValueError, match="temporal groups"):
        perception_targets(_scene(), [0, 2, 4, 6], torch.tensor([3, 4, 4]), merge_size=2, temporal_patch_size=2)
    with pytest.raises(ValueError, match="merge_size"):
        perception_targets(_scene(), [0, 2], torch.tensor([1, 4, 6]), merge_size=4, temporal_patch_size=2)


def test_targets_agree_with_the_rendered_pixels():
    # The colour label of a single-object cell is the colour drawn at the labelled centre (a finer grid, 4x4
    # cells, as a higher-resolution model sees it). Only another object drawn on top may disagree.
    settings = synth_settings(6, 64, 3, "easy", 8.0, 64, 4, (0.5, 0.25, 0.25))
    agree = total = 0
    for index in range(6):
        _, frames = render_video(index, settings)
        scene, _ = video_records(index, settings)
        indices = list(range(0, settings["frames"], 4))
        targets = perception_targets(scene, indices, torch.tensor([len(indices) // 2, 8, 8]), 2, 2)
        cells = targets.single.nonzero().flatten().tolist()
        for cell in cells:
            group, rest = divmod(cell, 16)
            row, col = divmod(rest, 4)
            x = int((col + targets.offset[cell, 0].item()) * 16)
            y = int((row + targets.offset[cell, 1].item()) * 16)
            pixel = frames[indices[2 * group], y, x].astype(int)
            nearest = min(COLOUR_NAMES, key=lambda name: np.abs(pixel - PALETTE[name]).sum())
            agree += nearest == COLOUR_NAMES[targets.colour[cell].item()]
            total += 1
    assert total > 50 and agree / total > 0.95, (agree, total)


@pytest.fixture(scope="module")
def demo_processor():
    return load_model_processing("demo")[1]


def test_dataset_has_one_item_per_video_with_a_target_per_merged_token(synth_dir, demo_processor):
    records = load_records(synth_dir / "train.jsonl")
    dataset = SyntheticPerceptionDataset(records, load_synth_settings(synth_dir), processor=demo_processor)
    assert len(dataset) == len({str(r.video_path) for r in records}) == 10 < len(records)
    sample = dataset[0]
    t, h, w = sample.video_grid_thw.tolist()
    assert sample.targets.count.shape == (t * h * w // 4,)
    assert sample.targets.single.any() and (sample.targets.count >= 0).all()
    batch = PerceptionBatchCollator()([dataset[0], dataset[1], SkippedSample(2, "x", "broken")])
    assert batch["size"] == 2 and batch["skipped"] == ["broken"]
    assert isinstance(batch["targets"], PerceptionTargets)
    assert batch["targets"].count.shape[0] == sum(int(g.prod()) // 4 for g in batch["video_grid_thw"])
    assert batch["pixel_values_videos"].shape[0] == sum(int(g.prod()) for g in batch["video_grid_thw"])


def test_unique_videos_keeps_the_first_record_of_each(synth_dir):
    records = load_records(synth_dir / "train.jsonl")
    first = unique_videos(records)
    assert [r.id for r in first] == [r.id for r in records if r.id.endswith("-q0")]


def test_a_set_without_its_generator_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="longvila-r1 data synth"):
        load_synth_settings(tmp_path)
    (tmp_path / "synth_config.json").write_text(json.dumps({"num_videos": 3}))
    with pytest.raises(ValueError, match=r"synth_config\.json"):
        load_synth_settings(tmp_path)


@pytest.fixture
def broken_copy(synth_dir, tmp_path):
    """The synthetic set with its first training video truncated and a foreign video named by one record."""
    copy = tmp_path / "synth"
    shutil.copytree(synth_dir, copy)
    first = copy / "videos" / "vid_00000.mp4"
    first.write_bytes(first.read_bytes()[:200])
    lines = (copy / "train.jsonl").read_text().splitlines()
    foreign = json.loads(lines[-1]) | {"id": "foreign", "videos": "videos/other.mp4"}
    shutil.copy(copy / "videos" / "vid_00001.mp4", copy / "videos" / "other.mp4")
    (copy / "train.jsonl").write_text("\n".join([*lines, json.dumps(foreign)]) + "\n")
    return copy


def test_bad_videos_raise_naming_the_file_or_are_skipped(broken_copy, demo_processor):
    records = load_records(broken_copy / "train.jsonl")
    settings = load_synth_settings(broken_copy)
    strict = SyntheticPerceptionDataset(records, settings, processor=demo_processor)
    with pytest.raises(ValueError, match=r"vid_00000\.mp4"):
        strict[0]
    with pytest.raises(ValueError, match=r"other\.mp4.*not a video of this synthetic set"):
        strict[len(strict) - 1]
    lenient = SyntheticPerceptionDataset(records, settings, processor=demo_processor, on_error="skip")
    items = [lenient[i] for i in range(len(lenient))]
    assert [type(item).__name__ for item in items].count("SkippedSample") == 2


def test_datamodule_serves_train_and_eval_videos_and_counts_skips(broken_copy):
    dm = SyntheticPerceptionDataModule(
        data_dir=str(broken_copy), num_frames=8, batch_size=4, eval_batch_size=8, on_error="skip"
    )
    dm.setup("fit")
    assert len(dm.train_set) == 11 and len(dm.eval_set) == 1
    batches = list(dm.train_dataloader())
    for batch in batches:
        dm.on_after_batch_transfer(batch, 0)
    assert sum(b["size"] for b in batches) == 9 and dm.skipped["samples"] == 2
    assert next(iter(dm.val_dataloader()))["size"] == 1


def test_sft_samples_of_a_foreign_video_raise_or_are_skipped(broken_copy):
    strict = LongVideoReasonDataModule(
        data_dir=str(broken_copy), model_path="demo", num_frames=8, perception_targets=True
    )
    strict.setup("fit")
    assert isinstance(strict.train_set, WithPerceptionTargets)
    with pytest.raises(ValueError, match=r"other\.mp4.*not a video of this synthetic set"):
        strict.train_set[len(strict.train_set) - 1]
    lenient = LongVideoReasonDataModule(
        data_dir=str(broken_copy), model_path="demo", num_frames=8, perception_targets=True, on_error="skip"
    )
    lenient.setup("fit")
    items = [lenient.train_set[i] for i in range(len(lenient.train_set))]
    skipped = [item for item in items if isinstance(item, SkippedSample)]
    assert len(skipped) == 5  # the truncated video's 4 questions and the foreign one
    assert all(item.perception_targets is not None for item in items if not isinstance(item, SkippedSample))
