"""Rollout engines: SamplingParams validation, the engine lifecycle and TransformersEngine sampling."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import longvila_r1.rollout as rollout
from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.models import VideoLMPolicy
from longvila_r1.rollout import RolloutEngine, SamplingParams, TransformersEngine, VLLMEngine
from longvila_r1.rollout.transformers_engine import chunk_seed


@pytest.fixture(scope="module")
def rl_batch(synth_dir) -> dict:
    dm = LongVideoReasonDataModule(data_dir=str(synth_dir), task="rl", num_frames=8, batch_size=2)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


@pytest.fixture(scope="module")
def policy() -> VideoLMPolicy:
    return VideoLMPolicy.build("tiny", seed=0)


@pytest.fixture(scope="module")
def embeddings(policy, rl_batch):
    with torch.no_grad():
        return policy.encode_video(
            rl_batch["pixel_values_videos"], rl_batch["video_grid_thw"], rl_batch["second_per_grid_ts"]
        )


@pytest.fixture
def engine(policy):
    engine = TransformersEngine()
    engine.setup(policy)
    yield engine
    engine.teardown()


def _prompts(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"]


def _assert_same_output(a, b) -> None:
    for name in ("sequences", "attention_mask", "mm_token_type_ids", "response_ids", "response_mask", "finished"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.prompt_length == b.prompt_length
    assert torch.equal(a.video_embeddings.embeds, b.video_embeddings.embeds)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"n": 0}, "n"),
        ({"stop_token_ids": []}, "stop_token_ids"),
    ],
)
def test_sampling_params_reject_invalid_values_by_name(kwargs, names):
    with pytest.raises(ValueError, match=names):
        SamplingParams(**kwargs)


def test_sampling_params_greedy_flag_or_zero_temperature():
    assert SamplingParams(temperature=0).is_greedy
    assert SamplingParams(greedy=True, temperature=0.7).is_greedy
    assert not SamplingParams().is_greedy
    kwargs = SamplingParams(temperature=0, stop_token_ids=[5, 6]).generate_kwargs()
    assert kwargs["do_sample"] is False and kwargs["stop_token_ids"] == [5, 6]
    assert SamplingParams(stop_token_ids=[5]).stop_token_ids == (5,)  # lists from YAML become tuples


def test_engine_must_be_set_up_and_awake(policy, rl_batch, embeddings):
    engine = TransformersEngine()
    with pytest.raises(RuntimeError, match="setup"):
        engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=2))
    engine.setup(policy)
    with pytest.raises(RuntimeError, match="already set up"):
        engine.setup(policy)
    engine.sleep()
    with pytest.raises(RuntimeError, match="wake_up"):
        engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=2))
    engine.wake_up()
    assert engine.sync_weights(policy) == 0.0  # the transformers engine shares the policy's weights
    assert not TransformersEngine.holds_own_weights
    engine.teardown()
    engine.teardown()  # idempotent
    with pytest.raises(RuntimeError, match="setup"):
        engine.sync_weights(policy)
    with pytest.raises(ValueError, match="max_batch_size"):
        TransformersEngine(max_batch_size=0)
    with pytest.raises(TypeError, match="abstract"):
        RolloutEngine()


def test_seeded_sampling_is_reproducible(engine, rl_batch, embeddings):
    params = SamplingParams(max_new_tokens=6, n=2, seed=3)
    first = engine.generate(*_prompts(rl_batch), embeddings, params)
    second = engine.generate(*_prompts(rl_batch), embeddings, params)
    other = engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=6, n=2, seed=4))
    assert torch.equal(first.response_ids, second.response_ids)
    assert not torch.equal(first.response_ids, other.response_ids)


def test_samples_are_grouped_per_prompt(engine, rl_batch, embeddings):
    n = 3
    out = engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=4, n=n, seed=0))
    batch_size, prompt_length = rl_batch["input_ids"].shape
    assert out.sequences.shape[0] == batch_size * n and out.prompt_length == prompt_length
    for row in range(batch_size * n):  # row b*n + g is sample g of prompt b
        assert torch.equal(out.sequences[row, :prompt_length], rl_batch["input_ids"][row // n])
    grids = out.video_embeddings.grid_thw
    assert torch.equal(grids, rl_batch["video_grid_thw"].repeat_interleave(n, dim=0))


def test_greedy_equals_policy_generate(engine, policy, rl_batch, embeddings):
    out = engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=6, temperature=0, n=2))
    ref = policy.generate(*_prompts(rl_batch), embeddings, max_new_tokens=6, do_sample=False, num_return_sequences=2)
    _assert_same_output(out, ref)
    assert torch.equal(out.response_ids[0], out.response_ids[1])  # greedy: every sample of a prompt agrees


def test_chunked_greedy_equals_one_call_with_uneven_stops(policy, engine, rl_batch, embeddings):
    probe = engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=6, greedy=True))
    # Stop prompt 0 on its third greedy token, so chunks end at different lengths and need padding.
    stop = int(probe.response_ids[0, 2])
    params = SamplingParams(max_new_tokens=6, greedy=True, n=3, stop_token_ids=[stop, policy.tokenizer.eos_token_id])
    whole = engine.generate(*_prompts(rl_batch), embeddings, params)
    chunked = TransformersEngine(max_batch_size=2)
    chunked.setup(policy)
    parts = chunked.generate(*_prompts(rl_batch), embeddings, params)
    _assert_same_output(parts, whole)
    assert bool(whole.finished[0]) and int(whole.response_lengths[0]) == 3


def test_chunked_sampling_is_seeded(policy, rl_batch, embeddings):
    engine = TransformersEngine(max_batch_size=4)
    engine.setup(policy)
    params = SamplingParams(max_new_tokens=4, n=3, seed=11)
    first = engine.generate(*_prompts(rl_batch), embeddings, params)
    second = engine.generate(*_prompts(rl_batch), embeddings, params)
    assert torch.equal(first.response_ids, second.response_ids)
    assert chunk_seed(11, 0) != chunk_seed(11, 1) and chunk_seed(None, 1) is None


def test_generation_never_runs_the_vision_tower(policy, rl_batch, embeddings):
    calls = []
    handle = policy.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        for max_batch_size in (None, 3):
            engine = TransformersEngine(max_batch_size=max_batch_size)
            engine.setup(policy)
            engine.generate(*_prompts(rl_batch), embeddings, SamplingParams(max_new_tokens=3, n=2, seed=0))
        assert calls == []
        with torch.no_grad():  # the hook does see the tower when it runs
            policy.encode_video(rl_batch["pixel_values_videos"], rl_batch["video_grid_thw"])
        assert calls == [1]
    finally:
        handle.remove()


def test_generate_validates_its_inputs(engine, rl_batch, embeddings):
    ids, mask, types = _prompts(rl_batch)
    with pytest.raises(TypeError, match="SamplingParams"):
        engine.generate(ids, mask, types, embeddings, {"n": 2})
    with pytest.raises(ValueError, match=r"\[B, P\]"):
        engine.generate(ids, mask[:, 1:], types, embeddings, SamplingParams())
    right_padded = mask.clone()
    right_padded[0, -1] = 0
    with pytest.raises(ValueError, match="left-padded"):
        engine.generate(ids, right_padded, types, embeddings, SamplingParams())


def test_rollout_package_never_imports_vllm_at_import_time():
    # jsonargparse imports every class_path while parsing YAML; a CPU machine without vLLM must still parse.
    # VLLMEngine imports vllm inside its methods only, so no module-level statement may import it.
    for source in Path(rollout.__file__).parent.glob("*.py"):
        for node in ast.parse(source.read_text()).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "vllm" for name in names), source.name


def test_vllm_engine_without_vllm_says_how_to_install_it():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here; tests/vllm_engine tests the engine")
    with pytest.raises(ImportError, match=r'pip install "longvila-r1\[vllm\]"') as error:
        VLLMEngine()
    assert "make test-vllm" in str(error.value)
