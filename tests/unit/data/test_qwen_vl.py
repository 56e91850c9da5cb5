"""Qwen-VL video preprocessing and prompt encoding (longvila_r1.data.qwen_vl, longvila_r1.data.qwen_vl_prompt)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longvila_r1.data.qwen_vl import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    VideoProcessorConfig,
    group_timestamps,
    num_video_tokens,
    patchify,
    preprocess_video,
    preprocess_videos,
    smart_resize,
    smart_resize_video,
    target_size,
    unpatchify,
)
from longvila_r1.data.qwen_vl_prompt import (
    DEFAULT_INSTRUCTION,
    IGNORE_INDEX,
    VIDEO_TYPE,
    build_prompt,
    format_question,
    render_prompt,
)
from longvila_r1.models.tokenizer import load_tiny_tokenizer

SIZES = [(h, w) for h in (1, 13, 28, 56, 99, 180, 360, 721, 1080) for w in (14, 27, 64, 160, 333, 640, 1920)]
SMALL = VideoProcessorConfig.qwen2_vl(min_pixels=56 * 56, max_pixels=112 * 112)


def random_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tiny_tokenizer()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((224, 224, 28, 56 * 56, 14 * 14 * 4 * 1280), (224, 224)),  # already fine
        ((360, 640, 28, 56 * 56, 224 * 224), (168, 280)),  # over budget: scaled down, floors
        ((20, 30, 28, 56 * 56, 14 * 14 * 4 * 1280), (56, 84)),  # under budget: scaled up, ceils
        ((100, 100, 32, 64 * 64, 128 * 128), (96, 96)),  # Qwen3-VL factor
    ],
)
def test_smart_resize_hand_cases(args, expected):
    assert smart_resize(*args) == expected


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        smart_resize(10, 2010)


def test_smart_resize_matches_hf():
    hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl").smart_resize
    for h, w in SIZES:
        if max(h, w) / min(h, w) <= 200:
            for budget in ((56 * 56, 28 * 28 * 768), (128 * 28 * 28, 28 * 28 * 768), (3136, 12845056)):
                assert smart_resize(h, w, 28, *budget) == hf(h, w, 28, *budget), (h, w, budget)


def test_smart_resize_video_matches_hf_qwen3():
    hf = pytest.importorskip("transformers.models.qwen3_vl.video_processing_qwen3_vl").smart_resize
    for h, w in SIZES:
        for t in (2, 7, 64):
            args = dict(num_frames=t, height=h, width=w, temporal_factor=2, factor=32)
            for lo, hi in ((128 * 32 * 32, 768 * 32 * 32), (4096, 25165824)):
                try:
                    expected = hf(**args, min_pixels=lo, max_pixels=hi)
                except ValueError:
                    with pytest.raises(ValueError):
                        smart_resize_video(**args, min_pixels=lo, max_pixels=hi)
                    continue
                assert smart_resize_video(**args, min_pixels=lo, max_pixels=hi) == expected, (t, h, w)
    with pytest.raises(ValueError, match="must be larger than temporal_factor"):
        smart_resize_video(1, 64, 64, 2, 32, 4096, 25165824)


def test_cap_pixels_per_frame_shrinks_long_videos():
    capped = VideoProcessorConfig.qwen2_vl(cap_pixels_per_frame=True)  # context of 128k tokens
    assert target_size(64, 720, 1280, capped) == target_size(64, 720, 1280, VideoProcessorConfig())
    share = int(128000 * 28 * 28 * 0.9) * 2 // 768  # each frame's even share of 90% of the context
    h, w = target_size(768, 720, 1280, capped)
    assert h * w <= share < 768 * 28 * 28
    floor_h, floor_w = target_size(8192, 720, 1280, capped)  # the share is floored at 1.05 * min_pixels
    assert floor_h * floor_w <= int(128 * 28 * 28 * 1.05)
    assert target_size(100_000, 720, 1280, capped) == (floor_h, floor_w)


def test_shapes_grid_and_token_count():
    pixels, grid = preprocess_video(random_frames(8, 90, 160), SMALL)
    assert grid.dtype == torch.long and grid.tolist() == [4, 6, 10]
    assert pixels.dtype == torch.float32 and pixels.shape == (4 * 6 * 10, 3 * 2 * 14 * 14)
    assert num_video_tokens(grid, 2) == 4 * 6 * 10 // 4 == 60
    q3_pixels, q3_grid = preprocess_video(random_frames(8, 90, 160), VideoProcessorConfig.qwen3_vl(min_pixels=4096))
    assert q3_pixels.shape[1] == 3 * 2 * 16 * 16 and q3_grid[1] % 2 == 0 and q3_grid[2] % 2 == 0


def test_odd_frame_count_padded_with_last_frame():
    frames = random_frames(5, 56, 84)
    pixels, grid = preprocess_video(frames, SMALL)
    assert grid.tolist() == [3, 4, 6]
    restored = unpatchify(pixels, grid, 14, 2, 2)  # [6, 3, 56, 84]
    assert restored.shape == (6, 3, 56, 84)
    assert torch.equal(restored[5], restored[4])
    assert not torch.equal(restored[4], restored[3])


def test_patchify_round_trip_recovers_normalised_frames():
    frames = random_frames(4, 56, 84)  # already a multiple of 28 and within budget: no resize
    pixels, grid = preprocess_video(frames, SMALL)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    expected = (torch.from_numpy(frames).permute(0, 3, 1, 2).double() / 255 - mean.double()) / std.double()
    torch.testing.assert_close(unpatchify(pixels, grid, 14, 2, 2).double(), expected, atol=1e-5, rtol=0)
    arbitrary = torch.randn(6, 3, 64, 96)
    assert torch.equal(unpatchify(patchify(arbitrary, 16, 2, 2), [3, 4, 6], 16, 2, 2), arbitrary)


def test_patch_rows_follow_merge_windows():
    """Row order is (t, h-block, w-block, h-in-window, w-in-window); each row is (C, tp, p, p) flattened."""
    video = torch.arange(2 * 3 * 56 * 56, dtype=torch.float32).reshape(2, 3, 56, 56)
    rows = patchify(video, 14, 2, 2)
    for row, (y, x) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (0, 2)]):
        block = video[:, :, 14 * y : 14 * y + 14, 14 * x : 14 * x + 14].permute(1, 0, 2, 3)  # [C, tp, p, p]
        assert torch.equal(rows[row], block.reshape(-1)), row


def test_normalisation_values():
    white, black = np.full((2, 56, 56, 3), 255, np.uint8), np.zeros((2, 56, 56, 3), np.uint8)
    pixels, _ = preprocess_video(white, SMALL)
    first = pixels[0].view(3, -1)  # channel-major rows
    for c in range(3):
        assert first[c].allclose(torch.tensor((1 - OPENAI_CLIP_MEAN[c]) / OPENAI_CLIP_STD[c]), atol=1e-5)
    q3 = VideoProcessorConfig.qwen3_vl(min_pixels=32 * 32)
    assert preprocess_video(white, q3)[0].allclose(torch.tensor(1.0))
    assert preprocess_video(black, q3)[0].allclose(torch.tensor(-1.0))
    raw = preprocess_video(white, VideoProcessorConfig(min_pixels=3136, do_rescale=False, do_normalize=False))[0]
    assert raw.dtype == torch.float32 and raw.eq(255).all()


def test_batch_concatenates_in_order():
    videos = [random_frames(4, 56, 56, seed=1), random_frames(3, 90, 160, seed=2), random_frames(4, 56, 56, seed=3)]
    batch = preprocess_videos(videos, SMALL, sampled_fps=[2.0, None, 4.0])
    singles = [preprocess_video(v, SMALL) for v in videos]
    assert torch.equal(batch.pixel_values_videos, torch.cat([p for p, _ in singles]))
    assert batch.video_grid_thw.tolist() == [g.tolist() for _, g in singles]
    assert batch.second_per_grid_ts.tolist() == pytest.approx([1.0, 2 / 24, 0.5])
    assert preprocess_videos(videos[:1]).second_per_grid_ts is None


@pytest.mark.parametrize(
    "frames",
    [np.zeros((4, 56, 56, 3), np.float32), np.zeros((4, 3, 56, 56), np.uint8), np.zeros((0, 56, 56, 3), np.uint8)],
)
def test_rejects_bad_frames(frames):
    with pytest.raises(ValueError, match=r"expected uint8 RGB frames \[T, H, W, 3\]"):
        preprocess_video(frames)


def test_group_timestamps():
    assert group_timestamps([0.0, 1.0, 2.0, 3.0]) == [0.5, 2.5]
    assert group_timestamps([0.0, 1.0, 2.0]) == [0.5, 2.0]
    assert group_timestamps([0, 1, 2, 3, 4, 5], temporal_patch_size=3) == [1.0, 4.0]


def test_presets_and_hf_config_round_trip(tmp_path):
    q2, q3 = VideoProcessorConfig.qwen2_vl(), VideoProcessorConfig.qwen3_vl()
    assert (q2.patch_size, q2.factor, q2.min_pixels, q2.max_pixels) == (14, 28, 128 * 28 * 28, 768 * 28 * 28)
    assert (q3.patch_size, q3.factor, q3.image_mean, q3.timestamp_tokens) == (16, 32, (0.5, 0.5, 0.5), True)
    for cfg in (q2, q3, VideoProcessorConfig.qwen3_vl(min_pixels=4096, cap_pixels_per_frame=True)):
        (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(cfg.to_dict()))
        assert VideoProcessorConfig.from_pretrained_dir(tmp_path) == cfg


def test_from_pretrained_dir_reads_hub_style_files(tmp_path):
    legacy = tmp_path / "qwen25"
    legacy.mkdir()
    # Qwen2.5-VL hub checkpoints only ship the image processor file, with top-level min/max_pixels.
    image_config = {"image_processor_type": "Qwen2VLImageProcessor", "min_pixels": 3136, "max_pixels": 12845056}
    (legacy / "preprocessor_config.json").write_text(json.dumps({**image_config, "patch_size": 14}))
    cfg = VideoProcessorConfig.from_pretrained_dir(legacy)
    assert (cfg.family, cfg.min_pixels, cfg.max_pixels, cfg.image_std) == ("qwen2_vl", 3136, 12845056, OPENAI_CLIP_STD)
    qwen3 = tmp_path / "qwen3"
    qwen3.mkdir()
    video_config = {"video_processor_type": "Qwen3VLVideoProcessor", "size": {"longest_edge": 25165824}, "fps": 2}
    (qwen3 / "video_preprocessor_config.json").write_text(json.dumps(video_config))
    (qwen3 / "preprocessor_config.json").write_text(json.dumps(image_config))  # the video file wins
    cfg = VideoProcessorConfig.from_pretrained_dir(qwen3)
    assert (cfg.family, cfg.patch_size, cfg.min_pixels, cfg.max_pixels) == ("qwen3_vl", 16, 128 * 32 * 32, 25165824)
    assert cfg.extra == {"video_processor_type": "Qwen3VLVideoProcessor", "fps": 2}
    (qwen3 / "video_preprocessor_config.json").write_text(json.dumps({**video_config, "resample": 2}))
    with pytest.raises(ValueError, match="only bicubic"):
        VideoProcessorConfig.from_pretrained_dir(qwen3)
    with pytest.raises(FileNotFoundError):
        VideoProcessorConfig.from_pretrained_dir(tmp_path / "missing")


def test_prompt_text_looks_like_qwen(tokenizer):
    text = render_prompt(tokenizer, "What happens first?", ["a dog runs", "a cat sits"])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|video_pad|><|vision_end|>What happens first?\nA. a dog runs\nB. a cat sits\n" in text
    assert text.endswith(f"{DEFAULT_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")
    assert format_question("Q?", None, instruction=None) == "Q?"


def test_video_pads_expanded_and_typed(tokenizer):
    grid = torch.tensor([3, 4, 6])
    enc = build_prompt(tokenizer, "Why?", ["x", "y", "z"], video_grid_thw=grid)
    pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    is_pad = enc.input_ids == pad
    assert int(is_pad.sum()) == num_video_tokens(grid) == 18
    assert torch.equal(enc.mm_token_type_ids == VIDEO_TYPE, is_pad)
    assert enc.mm_token_type_ids[~is_pad].eq(0).all()
    pads = is_pad.nonzero().flatten()
    assert torch.equal(pads, torch.arange(pads[0], pads[0] + 18))  # one contiguous run
    assert enc.input_ids[pads[0] - 1] == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert enc.labels is None and enc.prompt_length == len(enc) and enc.attention_mask.eq(1).all()


def test_labels_mask_all_but_response(tokenizer):
    response = "<think>The dog moves first.</think><answer>A</answer>"
    enc = build_prompt(tokenizer, "Why?", ["x", "y"], video_grid_thw=[2, 2, 2], response=response)
    assert enc.labels.shape == enc.input_ids.shape == enc.mm_token_type_ids.shape
    assert enc.labels[: enc.prompt_length].eq(IGNORE_INDEX).all()
    target = enc.labels[enc.prompt_length :]
    assert torch.equal(target, enc.input_ids[enc.prompt_length :]) and target.ne(IGNORE_INDEX).all()
    assert tokenizer.decode(target) == response + "<|im_end|>"
    assert tokenizer.decode(enc.input_ids[: enc.prompt_length]).endswith("<|im_start|>assistant\n")


def test_timestamp_layout(tokenizer):
    enc = build_prompt(tokenizer, "Why?", video_grid_thw=[2, 2, 4], timestamps=[0.5, 2.25])
    text = tokenizer.decode(enc.input_ids)
    group = "<|vision_start|>" + "<|video_pad|>" * 2 + "<|vision_end|>"
    assert f"<|vision_start|><0.5 seconds>{group}<2.2 seconds>{group}<|vision_end|>Why?" in text
    assert int((enc.mm_token_type_ids == VIDEO_TYPE).sum()) == 4
    with pytest.raises(ValueError, match="one timestamp per temporal group"):
        build_prompt(tokenizer, "Why?", video_grid_thw=[2, 2, 4], timestamps=[0.5])


def test_prompt_errors(tokenizer):
    with pytest.raises(ValueError, match=r"exactly one <\|video_pad\|>"):
        build_prompt(tokenizer, "Look: <|video_pad|>", video_grid_thw=[1, 2, 2])
    with pytest.raises(ValueError, match="at most 26 options"):
        build_prompt(tokenizer, "Why?", [str(i) for i in range(27)], video_grid_thw=[1, 2, 2])


# --- equality with the HF processors (they need torchvision, which only GPU machines have) ---------------------


@pytest.mark.parametrize(("t", "h", "w"), [(5, 50, 70), (4, 90, 160), (3, 17, 300), (16, 60, 80)])
def test_pixels_match_hf_video_processors(t, h, w):
    pytest.importorskip("torchvision", reason="HF video processors need torchvision (not installable on CPU CI)")
    from transformers import Qwen2VLVideoProcessor, Qwen3VLVideoProcessor

    frames = random_frames(t, h, w, seed=t)
    for cap in (False, True):
        ours = VideoProcessorConfig.qwen2_vl(min_pixels=3136, max_pixels=112 * 112, cap_pixels_per_frame=cap)
        hf = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=112 * 112)(
            videos=[frames], return_tensors="pt", cap_pixels_per_frame=cap
        )
        pixels, grid = preprocess_video(frames, ours)
        assert torch.equal(hf["video_grid_thw"][0], grid) and torch.equal(hf["pixel_values_videos"], pixels)
        ours = VideoProcessorConfig.qwen3_vl(min_pixels=4096, max_pixels=32 * 32 * 64, cap_pixels_per_frame=cap)
        size = {"shortest_edge": 4096, "longest_edge": 32 * 32 * 64}
        hf = Qwen3VLVideoProcessor(size=size, do_sample_frames=False)(
            videos=[frames], return_tensors="pt", cap_pixels_per_frame=cap
        )
        pixels, grid = preprocess_video(frames, ours)
        assert torch.equal(hf["video_grid_thw"][0], grid) and torch.equal(hf["pixel_values_videos"], pixels)


def test_tokens_match_hf_processors(tokenizer):
    pytest.importorskip("torchvision", reason="HF video processors need torchvision (not installable on CPU CI)")
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )
    from transformers.video_utils import VideoMetadata

    frames, text = random_frames(5, 60, 80), render_prompt(tokenizer, "What first?", ["dog", "cat"])
    processors = {
        "qwen2_vl": Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=112 * 112),
            chat_template=tokenizer.chat_template,
        ),
        "qwen3_vl": Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(),
            tokenizer=tokenizer,
            video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": 4096, "longest_edge": 32 * 32 * 40}),
            chat_template=tokenizer.chat_template,
        ),
    }
    configs = {
        "qwen2_vl": VideoProcessorConfig.qwen2_vl(min_pixels=3136, max_pixels=112 * 112),
        "qwen3_vl": VideoProcessorConfig.qwen3_vl(min_pixels=4096, max_pixels=32 * 32 * 40),
    }
    metadata = VideoMetadata(total_num_frames=50, fps=10.0, frames_indices=[0, 10, 20, 31, 45])
    for family, processor in processors.items():
        hf = processor(
            text=[text], videos=[frames], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
        )
        config = configs[family]
        pixels, grid = preprocess_video(frames, config)
        times = [i / metadata.fps for i in metadata.frames_indices]
        stamps = group_timestamps(times, config.temporal_patch_size) if config.timestamp_tokens else None
        enc = build_prompt(tokenizer, "What first?", ["dog", "cat"], video_grid_thw=grid, timestamps=stamps)
        assert torch.equal(hf["input_ids"][0], enc.input_ids), family
        assert torch.equal(hf["mm_token_type_ids"][0], enc.mm_token_type_ids), family
        assert torch.equal(hf["pixel_values_videos"], pixels), family
    assert processors["qwen2_vl"](text=[text], videos=[frames], video_metadata=[metadata])["second_per_grid_ts"] == [
        pytest.approx(preprocess_videos([frames], configs["qwen2_vl"], sampled_fps=[1.0]).second_per_grid_ts.item())
    ]
