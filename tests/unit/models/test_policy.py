"""VideoLMPolicy: the cached-embedding route must reproduce the pixel route exactly, in every call."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from longvila_r1.models import (
    FAMILIES,
    VideoEmbeddings,
    VideoLMPolicy,
    special_token_ids,
    tiny_config,
)

IDS = special_token_ids()
IM_START, VISION_START, VISION_END, VIDEO = 1, IDS["vision_start_token_id"], IDS["vision_end_token_id"], 7
FIRST_TEXT_ID = 12  # after the special and reasoning tokens
# Two videos of different grids (t, h, w in patches) and different amounts of left padding.
GRIDS = [[4, 4, 6], [2, 6, 4]]


@pytest.fixture(scope="module")
def policies() -> dict[str, VideoLMPolicy]:
    return {family: VideoLMPolicy.build("tiny", family=family, seed=0) for family in FAMILIES}


def _video_ids(policy: VideoLMPolicy, grid: list[int]) -> tuple[list[int], list[int]]:
    """Placeholder ids and token types of one video, in the family's prompt layout."""
    t, h, w = grid
    per_frame = h * w // policy.merge_size**2
    if policy.family != "qwen3_vl":
        return [VISION_START, *[VIDEO] * (t * per_frame), VISION_END], [0, *[2] * (t * per_frame), 0]
    ids, types = [], []
    for frame in range(t):  # Qwen3-VL: `<t seconds><|vision_start|>pads<|vision_end|>` per temporal patch
        ids += [FIRST_TEXT_ID + frame, VISION_START, *[VIDEO] * per_frame, VISION_END]
        types += [0, 0, *[2] * per_frame, 0]
    return ids, types


def make_batch(policy: VideoLMPolicy, grids=GRIDS, text_lens=(5, 9), seed: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded prompts, one video each, with matching random pixels (the shapes HF's processor makes)."""
    gen = torch.Generator().manual_seed(seed)
    vocab = len(policy.tokenizer)
    rows = []
    for grid, text_len in zip(grids, text_lens, strict=True):
        video_ids, video_types = _video_ids(policy, grid)
        text = torch.randint(FIRST_TEXT_ID, vocab, (text_len,), generator=gen).tolist()
        rows.append(([IM_START, *video_ids, *text], [0, *video_types, *[0] * text_len]))
    length = max(len(ids) for ids, _ in rows)
    pad = [length - len(ids) for ids, _ in rows]
    grid_thw = torch.tensor(grids)
    patch_dim = 3 * policy.temporal_patch_size * policy.patch_size**2
    return {
        "input_ids": torch.tensor([[0] * p + ids for p, (ids, _) in zip(pad, rows, strict=True)]),
        "attention_mask": torch.tensor([[0] * p + [1] * len(ids) for p, (ids, _) in zip(pad, rows, strict=True)]),
        "mm_token_type_ids": torch.tensor([[0] * p + types for p, (_, types) in zip(pad, rows, strict=True)]),
        "pixel_values_videos": torch.randn(int(grid_thw.prod(-1).sum()), patch_dim, generator=gen),
        "video_grid_thw": grid_thw,
    }


def text_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"]


def hf_logits(policy: VideoLMPolicy, batch: dict) -> torch.Tensor:
    """The reference: transformers' own pixel route."""
    policy.model.model.rope_deltas = None
    return policy.model(**batch).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_embedding_route_equals_pixel_route(policies, family):
    policy = policies[family]
    batch = make_batch(policy)
    assert batch["attention_mask"][:, 0].tolist() != [1, 1], "the batch must contain left padding"
    with torch.no_grad():
        reference = hf_logits(policy, batch)
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
        cached = policy(*text_inputs(batch), video_embeddings=emb)
        through_pixels = policy(**batch)
    assert torch.equal(cached, reference)
    assert torch.equal(through_pixels, reference)
    assert (emb.deepstack is not None) == (family == "qwen3_vl")


def test_qwen2_5_time_scale_is_carried_by_the_embeddings(policies):
    policy = policies["qwen2_5_vl"]
    batch = make_batch(policy)
    seconds = torch.tensor([0.5, 2.0])
    with torch.no_grad():
        reference = hf_logits(policy, {**batch, "second_per_grid_ts": seconds})
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"], second_per_grid_ts=seconds)
        assert torch.equal(policy(*text_inputs(batch), video_embeddings=emb), reference)
        assert not torch.equal(reference, hf_logits(policy, batch))
    qwen3 = policies["qwen3_vl"]
    qwen3_batch = make_batch(qwen3)
    emb = qwen3.encode_video(qwen3_batch["pixel_values_videos"], qwen3_batch["video_grid_thw"], seconds)
    with pytest.raises(ValueError, match="second_per_grid_ts is a qwen2_5_vl input"):
        qwen3(*text_inputs(qwen3_batch), video_embeddings=emb)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generate_equals_pixel_generate(policies, family):
    policy = policies[family]
    batch = make_batch(policy)
    policy.model.model.rope_deltas = None
    with torch.no_grad():
        # policy.generate never samples vision placeholders; the reference must not either (with transformers
        # 5.19 the random tiny Qwen2-VL's greedy choice is <|vision_start|> at step 4).
        reference = policy.model.generate(
            **batch,
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=[2],
            pad_token_id=0,
            suppress_tokens=policy.vision_placeholder_ids,
        )
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    out = policy.generate(*text_inputs(batch), emb, max_new_tokens=6, do_sample=False)
    assert torch.equal(out.sequences, reference)
    assert out.prompt_length == batch["input_ids"].shape[1]


def test_calls_are_independent_of_cached_rope_deltas(policies):
    policy = policies["qwen2_5_vl"]
    first, second = make_batch(policy, seed=0), make_batch(policy, [[2, 4, 4]], text_lens=[3], seed=1)
    with torch.no_grad():
        emb = policy.encode_video(first["pixel_values_videos"], first["video_grid_thw"])
        expected = policy(*text_inputs(first), video_embeddings=emb)
        policy(**second)
        policy.generate(*text_inputs(second), max_new_tokens=2, do_sample=False)
        policy.model.model.rope_deltas = torch.full((7, 1), 1000)  # stale state left by someone else
        assert torch.equal(policy(*text_inputs(first), video_embeddings=emb), expected)


def test_generate_repeats_embeddings_without_reencoding(policies):
    policy = policies["qwen3_vl"]
    batch = make_batch(policy)
    calls = []
    handle = policy.vision_tower.register_forward_hook(lambda *_: calls.append(1))
    try:
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
        rng_state = torch.get_rng_state()
        sampled = policy.generate(*text_inputs(batch), emb, max_new_tokens=4, num_return_sequences=3, seed=7)
        again = policy.generate(*text_inputs(batch), emb, max_new_tokens=4, num_return_sequences=3, seed=7)
        greedy = policy.generate(*text_inputs(batch), emb, max_new_tokens=4, do_sample=False, num_return_sequences=2)
        single = policy.generate(*text_inputs(batch), emb, max_new_tokens=4, do_sample=False)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert torch.equal(torch.get_rng_state(), rng_state), "a seeded generate must not move the global RNG"
    assert sampled.sequences.shape[0] == 6 and torch.equal(sampled.sequences, again.sequences)
    # Rows are grouped per prompt (repeat_interleave): [p0, p0, p1, p1].
    assert torch.equal(greedy.sequences, single.sequences.repeat_interleave(2, dim=0))
    videos = emb.split_per_video()
    expanded = sampled.video_embeddings.split_per_video()
    assert [torch.equal(e.embeds, videos[i // 3].embeds) for i, e in enumerate(expanded)] == [True] * 6
    assert all(torch.equal(a, b) for a, b in zip(expanded[4].deepstack, videos[1].deepstack, strict=True))


def test_generation_output_masks_after_the_stop_token(policies):
    policy = policies["qwen2_5_vl"]
    batch = make_batch(policy)
    emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    free = policy.generate(*text_inputs(batch), emb, max_new_tokens=5, do_sample=False)
    stop = int(free.response_ids[0, 1])  # force a stop at the second token of row 0
    out = policy.generate(*text_inputs(batch), emb, max_new_tokens=5, do_sample=False, stop_token_ids=[stop])
    assert out.response_mask[0].tolist()[:2] == [1, 1] and out.finished[0]
    assert out.response_lengths[0] == 2 and (out.response_ids[0, 2:] == policy.tokenizer.pad_token_id).all()
    prompt_mask = batch["attention_mask"]
    assert torch.equal(out.attention_mask, torch.cat([prompt_mask, out.response_mask], dim=1))
    assert (out.mm_token_type_ids[:, out.prompt_length :] == 0).all()


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_response_logprobs_match_full_log_softmax(policies, family):
    policy = policies[family]
    batch = make_batch(policy)
    with torch.no_grad():
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
        out = policy.generate(*text_inputs(batch), emb, max_new_tokens=5, num_return_sequences=2, seed=0)
        inputs = (out.sequences, out.attention_mask, out.mm_token_type_ids, out.video_embeddings)
        logprobs, entropy = policy.response_logprobs(
            *inputs, prompt_lengths=out.prompt_length, temperature=0.7, return_entropy=True, chunk_size=3
        )
        full = torch.log_softmax(policy(*inputs).float() / 0.7, dim=-1)[:, :-1]  # [B, S-1, V]
    mask = torch.zeros_like(out.attention_mask)
    mask[:, out.prompt_length :] = out.response_mask
    scored = mask[:, 1:].bool()
    expected = full.gather(-1, out.sequences[:, 1:, None]).squeeze(-1)  # [B, S-1]
    torch.testing.assert_close(logprobs[scored], expected[scored], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy[scored], -(full.exp() * full).sum(-1)[scored], atol=1e-5, rtol=1e-5)
    assert (logprobs[~scored] == 0).all()
    with torch.no_grad():
        by_mask = policy.response_logprobs(*inputs, response_mask=mask, temperature=0.7, chunk_size=3)
    assert torch.equal(by_mask, logprobs)


def test_logprob_gradients_same_with_chunk_recompute(policies):
    policy = policies["qwen2_5_vl"]
    batch = make_batch(policy)
    emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"]).detach()
    grads = []
    for chunk_size in (2, 1024):
        policy.zero_grad()
        policy.response_logprobs(*text_inputs(batch), emb, prompt_lengths=3, chunk_size=chunk_size).sum().backward()
        grads.append(policy.model.lm_head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    policy.zero_grad()


def _vision_and_language_grads(policy: VideoLMPolicy, batch: dict, cached: bool) -> tuple[list, list]:
    policy.zero_grad()
    if cached:
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
        logits = policy(*text_inputs(batch), video_embeddings=emb)
    else:
        logits = policy(**batch)
    logits.float().logsumexp(-1).mean().backward()
    vision = [p.grad for p in policy.vision_parameters()]
    language = [p.grad for p in policy.language_parameters()]
    policy.zero_grad()
    return vision, language


@pytest.mark.parametrize("cached", [False, True])
def test_gradient_reaches_vision_tower(policies, cached):
    policy = policies["qwen3_vl"]
    vision, language = _vision_and_language_grads(policy, make_batch(policy), cached)
    assert all(g is not None for g in vision) and any(g.abs().sum() > 0 for g in vision)
    assert any(g is not None and g.abs().sum() > 0 for g in language)


def test_frozen_vision_gets_no_gradient():
    policy = VideoLMPolicy.build("tiny", family="qwen2_5_vl", freeze_vision=True)
    assert not any(p.requires_grad for p in policy.vision_parameters())
    assert all(p.requires_grad for p in policy.language_parameters())
    vision, language = _vision_and_language_grads(policy, make_batch(policy), cached=False)
    assert all(g is None for g in vision)
    assert all(g is not None for g in language)
    n_vision, n_language = sum(1 for _ in policy.vision_parameters()), sum(1 for _ in policy.language_parameters())
    assert n_vision + n_language == sum(1 for _ in policy.parameters())


def test_gradient_checkpointing_gives_same_gradients():
    grads = []
    for checkpointing in (False, True):
        policy = VideoLMPolicy.build("tiny", family="qwen2_5_vl", seed=3, gradient_checkpointing=checkpointing)
        policy.train()
        _, language = _vision_and_language_grads(policy, make_batch(policy), cached=False)
        grads.append(language)
    for plain, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, recomputed)


def test_save_and_load_round_trip(policies, tmp_path):
    from transformers import AutoModelForImageTextToText

    policy = policies["qwen3_vl"]
    policy.save_pretrained(tmp_path)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path), type(policy.model))
    loaded = VideoLMPolicy.build(path=str(tmp_path))
    assert loaded.family == "qwen3_vl" and len(loaded.tokenizer) == len(policy.tokenizer)
    assert all(module.training for module in loaded.model.modules()), "a loaded policy starts in train mode"
    assert loaded.tokenizer.chat_template == policy.tokenizer.chat_template
    batch = make_batch(policy)
    with torch.no_grad():
        assert torch.equal(loaded(**batch), policy(**batch))


def test_preset_seed_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    first = VideoLMPolicy.from_preset("tiny", "qwen2_vl", seed=5)
    second = VideoLMPolicy.from_preset("tiny", "qwen2_vl", seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_bfloat16_build_runs(policies):
    policy = VideoLMPolicy.build("tiny", family="qwen2_5_vl", dtype="bfloat16")
    assert {p.dtype for p in policy.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert policy(**make_batch(policy)).dtype == torch.bfloat16


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_config_fits_the_tokenizer(family):
    config = tiny_config(family, vocab_size=500, text_layers=3)
    text = config.text_config
    assert text.num_hidden_layers == 3 and text.vocab_size == 500
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    ids = [config.video_token_id, config.image_token_id, config.vision_start_token_id, text.eos_token_id]
    assert max(ids) < 500 and config.video_token_id == VIDEO
    if family == "qwen3_vl":
        assert max(config.vision_config.deepstack_visual_indexes) < config.vision_config.depth


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "float64"}, "dtype='float64' is not one of"),
        ({"attn_implementation": "flash"}, "attn_implementation='flash' is not one of"),
        ({"family": "llava"}, "family='llava' is not one of"),
        ({"path": "no/such/dir"}, "neither a preset"),
        ({"text_layerz": 3}, "unknown preset overrides"),
        ({"text_hidden": 100}, "text_hidden"),
    ],
)
def test_build_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VideoLMPolicy.build(**kwargs)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed")
def test_flash_attention_without_package_says_how_to_install():
    with pytest.raises(ImportError, match=r"longvila-r1\[flash\]"):
        VideoLMPolicy.build(attn_implementation="flash_attention_2")


def test_load_with_wrong_family_fails(policies, tmp_path):
    policies["qwen2_vl"].save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="family='qwen3_vl'"):
        VideoLMPolicy.build(path=str(tmp_path), family="qwen3_vl")


def test_input_errors(policies):
    policy = policies["qwen2_5_vl"]
    batch = make_batch(policy)
    ids, mask, types = text_inputs(batch)
    emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    with pytest.raises(ValueError, match="mm_token_type_ids is required"):
        policy(ids, mask, None, video_embeddings=emb)
    with pytest.raises(ValueError, match="not both"):
        policy(ids, mask, types, emb, batch["pixel_values_videos"], batch["video_grid_thw"])
    with pytest.raises(ValueError, match="left-padded"):
        policy.generate(ids.flip(1), mask.flip(1), types.flip(1), emb)
    with pytest.raises(ValueError, match="num_return_sequences"):
        policy.generate(ids, mask, types, emb, num_return_sequences=0)
    with pytest.raises(ValueError, match="top_p"):
        policy.generate(ids, mask, types, emb, top_p=0.0)
    with pytest.raises(ValueError, match="response_mask or prompt_lengths"):
        policy.response_logprobs(ids, mask, types, emb, response_mask=mask, prompt_lengths=2)


def test_qwen3_rejects_a_video_as_one_token_run(policies):
    qwen3, qwen25 = policies["qwen3_vl"], policies["qwen2_5_vl"]
    batch = make_batch(qwen25, grids=[[2, 8, 8]], text_lens=[3])  # Qwen2.5 layout: one run per video
    batch["pixel_values_videos"] = torch.randn(128, 3 * 2 * 16 * 16)
    emb = qwen3.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    with pytest.raises(ValueError, match="one run of <\\|video_pad\\|> tokens per temporal patch"):
        qwen3(*text_inputs(batch), video_embeddings=emb)


def test_video_embeddings_helpers(policies):
    policy = policies["qwen3_vl"]
    batch = make_batch(policy)
    emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    assert emb.num_videos == 2 and emb.token_counts == [24, 12]
    parts = emb.split_per_video()
    joined = VideoEmbeddings.concat(parts)
    assert torch.equal(joined.embeds, emb.embeds) and torch.equal(joined.grid_thw, emb.grid_thw)
    assert all(torch.equal(a, b) for a, b in zip(joined.deepstack, emb.deepstack, strict=True))
    assert emb.nbytes == (1 + len(emb.deepstack)) * emb.embeds.numel() * 4 + emb.grid_thw.numel() * 8
    assert not emb.detach().embeds.requires_grad and emb.embeds.requires_grad
    half = emb.to(dtype=torch.bfloat16)
    assert half.embeds.dtype == torch.bfloat16 and half.grid_thw.dtype == torch.long
    assert torch.equal(emb.select([1, 0]).embeds, torch.cat([parts[1].embeds, parts[0].embeds]))
    assert emb.videos_per_row([24, 0, 12]) == [1, 0, 1]
    with pytest.raises(ValueError, match="do not match"):
        emb.videos_per_row([20, 16])
    with pytest.raises(ValueError, match="rows but grid_thw implies"):
        VideoEmbeddings(emb.embeds[:5], emb.grid_thw, merge_size=2)
