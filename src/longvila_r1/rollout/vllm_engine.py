"""The vLLM rollout engine: colocated with training, fed with the cached video embeddings.

vLLM runs in the training process itself (offline ``vllm.LLM`` with the in-process engine core), so the engine
can reach vLLM's copy of the model and overwrite its weights in memory after each optimizer step, and the
videos can enter as the embeddings the policy already computed: vLLM never runs its own vision tower.

vLLM is an optional extra, imported only when an engine is built (a CPU machine must parse every YAML naming
this class without it). The request/response translation lives in :mod:`longvila_r1.rollout.vllm_requests`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from typing_extensions import override

from longvila_r1.models.embeddings import VideoEmbeddings
from longvila_r1.models.generation import GenerationOutput
from longvila_r1.rollout.engine import RolloutEngine, SamplingParams
from longvila_r1.rollout.vllm_positions import use_trainer_positions
from longvila_r1.rollout.vllm_requests import (
    build_generation_output,
    build_prompts,
    sampling_params_for,
    write_processor_configs,
)

if TYPE_CHECKING:
    from longvila_r1.models.policy import VideoLMPolicy

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'VLLMEngine needs vLLM: pip install "longvila-r1[vllm]" on a CUDA machine. On a CPU machine, vLLM\'s CPU '
    "build runs in its own environment: `make test-vllm` creates .venv-vllm with it (see README, 'vLLM rollout')."
)
SUPPORTED_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# On CPU vLLM sizes its KV cache as a fraction of the node's memory *minus this process's RSS*, which in a
# colocated run includes the trainer's model and optimizer; an explicit size is the predictable choice.
CPU_KV_CACHE_BYTES = 1 << 30


def import_vllm():
    """``import vllm``, or an ``ImportError`` that says how to install it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return vllm


class VLLMEngine(RolloutEngine):
    """Samples with vLLM in the training process, from cached video embeddings, with in-memory weight sync.

    ``setup`` exports the policy (config, safetensors, tokenizer, chat template, processor configs) to a
    temporary directory and starts ``vllm.LLM`` on it; ``sync_weights`` copies the policy's current weights into
    vLLM's model without touching disk (language model only while the vision tower is frozen: vLLM never runs
    it); ``generate`` sends each prompt with its videos as ``video_embeds`` + ``video_grid_thw`` (+ Qwen2.5-VL's
    ``second_per_grid_ts``) and returns the same :class:`GenerationOutput` as
    :class:`~longvila_r1.rollout.TransformersEngine`. M-RoPE positions inside vLLM come from the policy's own
    transformers code (:mod:`~longvila_r1.rollout.vllm_positions`), so rollouts and training agree on them.

    Args:
        tensor_parallel_size: GPUs one vLLM model is sharded over. Above 1 every training rank runs its own
            engine under vLLM's ``external_launcher`` (launch with torchrun / Lightning DDP, world size a
            multiple of it); the ranks of a tensor-parallel group pool their prompts so vLLM sees the same
            requests on each.
        gpu_memory_utilization: fraction of GPU memory vLLM may take (weights + KV cache); leave room for
            training when colocated.
        kv_cache_memory_bytes: explicit KV-cache size instead of ``gpu_memory_utilization``; ``None`` uses the
            fraction on GPU and 1 GiB on CPU.
        enable_sleep_mode: between rollouts free vLLM's KV cache and offload its weights (``sleep_level`` 1) so
            training gets the memory back. CUDA only: on CPU sleep/wake keep the engine resident.
        sleep_level: 1 offloads the weights to CPU memory, 2 discards them (every sync then sends all weights).
        dtype: vLLM's compute dtype (``"auto"``: the policy's).
        max_model_len: longest prompt + response; ``None`` takes the model config's.
        max_num_seqs: most sequences vLLM schedules at once (``None``: vLLM's default).
        seed: vLLM's engine seed (requests are seeded from :class:`SamplingParams` as well).
        enforce_eager: skip CUDA graphs / ``torch.compile`` (faster start, slower decoding).
        enable_prefix_caching: reuse the KV cache of shared prompt prefixes (the ``G`` samples of a prompt).
        processor_path: preset name or model directory whose video preprocessing vLLM's own processor config
            gets. Only pixel inputs use it and this engine sends none; ``None`` derives it from the model config.
        engine_kwargs: further ``vllm.LLM`` keyword arguments.

    Raises:
        ImportError: when vLLM is not installed (the message says how to install it).

    Example:
        >>> engine = VLLMEngine(gpu_memory_utilization=0.3, enable_sleep_mode=True)
        >>> engine.setup(policy)  # exports the policy and starts vLLM on it
        >>> out = engine.generate(ids, mask, types, embeddings, SamplingParams(max_new_tokens=512, n=8, seed=0))
        >>> seconds = engine.sync_weights(policy)  # after optimizer.step()

        In YAML (``configs/rollout/vllm.yaml`` is an overlay for ``configs/grpo.yaml``):

        .. code-block:: yaml

            model:
              init_args:
                rollout_engine:
                  class_path: longvila_r1.rollout.VLLMEngine
                  init_args:
                    gpu_memory_utilization: 0.3
                    enable_sleep_mode: true
    """

    holds_own_weights = True

    def __init__(
        self,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.3,
        kv_cache_memory_bytes: int | None = None,
        enable_sleep_mode: bool = True,
        sleep_level: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        seed: int = 0,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        processor_path: str | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_arguments(tensor_parallel_size, gpu_memory_utilization, kv_cache_memory_bytes, sleep_level, dtype)
        import_vllm()  # fail here, at config time, rather than at fit start
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.kv_cache_memory_bytes = kv_cache_memory_bytes
        self.enable_sleep_mode = enable_sleep_mode
        self.sleep_level = sleep_level
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.seed = seed
        self.enforce_eager = enforce_eager
        self.enable_prefix_caching = enable_prefix_caching
        self.processor_path = processor_path
        self.engine_kwargs = dict(engine_kwargs or {})
        self._llm = None
        self._export_dir: Path | None = None
        self._weights_awake = False  # asleep, but the weights were woken for a sync
        self._tp_group = None

    @property
    def llm(self):
        """The underlying ``vllm.LLM`` (for inspection and tests)."""
        self._require_setup()
        return self._llm

    @property
    def sleeps(self) -> bool:
        """Whether :meth:`sleep` really frees memory (sleep mode on, CUDA present)."""
        return self.enable_sleep_mode and torch.cuda.is_available()

    # ------------------------------------------------------------------ lifecycle
    @override
    def _setup(self, policy: VideoLMPolicy) -> None:
        if policy.family not in SUPPORTED_FAMILIES:
            raise ValueError(
                f"VLLMEngine supports {SUPPORTED_FAMILIES}, not {policy.family!r}: vLLM's Qwen3-VL embedding input "
                "also carries deepstack features and rebuilds per-frame timestamp text; use TransformersEngine"
            )
        if self.enable_sleep_mode and not torch.cuda.is_available():
            log.info("VLLMEngine: sleep mode needs CUDA; on CPU sleep() and wake_up() keep the engine resident")
        self._export_dir = Path(tempfile.mkdtemp(prefix="longvila-vllm-"))
        try:
            self._start(policy)
        except BaseException:
            self._teardown()  # setup() did not complete, so teardown() would not run: clean up here
            raise

    def _start(self, policy: VideoLMPolicy) -> None:
        policy.save_pretrained(self._export_dir)
        write_processor_configs(policy, self._export_dir, self.processor_path)
        if self.tensor_parallel_size > 1:
            self._tp_group = _tensor_parallel_group(self.tensor_parallel_size)
        vllm = import_vllm()
        # In-process engine core: vLLM's model lives in this process, where load_weights can reach it.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        with _preserved_rng():  # vLLM seeds the global RNGs of the process it runs in
            self._llm = vllm.LLM(model=str(self._export_dir), **self._llm_kwargs())
        use_trainer_positions(self._llm, policy)  # vLLM and transformers 5 place post-video text differently

    def _llm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
            "seed": self.seed,
            "enforce_eager": self.enforce_eager,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enable_sleep_mode": self.sleeps,
            # Videos arrive as embeddings only: no pixel budget, and no second cache of the embeddings.
            "enable_mm_embeds": True,
            "mm_processor_cache_gb": 0,
        }
        kv_bytes = self.kv_cache_memory_bytes
        if not torch.cuda.is_available():
            kv_bytes = CPU_KV_CACHE_BYTES if kv_bytes is None else kv_bytes
            # vLLM 0.32 on CPU fails on a seeded request whose prompt is prefilled in chunks (it rewinds the
            # request's generator, which only CUDA generators support); whole-prompt prefills avoid that.
            kwargs["enable_chunked_prefill"] = False
        optional = {"kv_cache_memory_bytes": kv_bytes, "max_model_len": self.max_model_len}
        optional["max_num_seqs"] = self.max_num_seqs
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        if _distributed():
            # One engine per training rank, inside the trainer's process group (vLLM's colocated mode).
            kwargs["distributed_executor_backend"] = "external_launcher"
        return {**kwargs, **self.engine_kwargs}

    @override
    def _teardown(self) -> None:
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
            _release_vllm_state()
        if self._export_dir is not None:
            shutil.rmtree(self._export_dir, ignore_errors=True)
            self._export_dir = None
        self._weights_awake = False

    @override
    def _sleep(self) -> None:
        if self.sleeps:
            self._llm.sleep(level=self.sleep_level)

    @override
    def _wake_up(self) -> None:
        if self.sleeps:
            self._llm.wake_up(tags=["kv_cache"] if self._weights_awake else None)
        self._weights_awake = False

    # ------------------------------------------------------------------ weights
    @override
    def _load_weights(self, policy: VideoLMPolicy) -> None:
        if self.is_asleep and self.sleeps and not self._weights_awake:
            # Only the weights come back for the copy; the KV cache stays freed until the next rollout.
            self._llm.wake_up(tags=["weights"])
            self._weights_awake = True
        everything = self.sleep_level == 2 and self.sleeps  # level 2 discarded every weight, vision included
        weights = list(weights_to_sync(policy, everything=everything))
        vision = everything or any(p.requires_grad for p in policy.vision_parameters())
        model_config = self._llm.llm_engine.model_config
        missing = self._llm.apply_model(lambda model: reload_in_place(model, weights, model_config, vision))
        if any(missing):
            # A naming mismatch would otherwise leave vLLM sampling from stale weights without a sound.
            raise RuntimeError(f"weight sync left vLLM parameters without new values: {sorted(set().union(*missing))}")
        # Cached prefixes hold keys/values of the old weights.
        self._llm.reset_prefix_cache()

    # ------------------------------------------------------------------ sampling
    @override
    def _generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        mm_token_type_ids: Tensor,
        video_embeddings: VideoEmbeddings | None,
        params: SamplingParams,
    ) -> GenerationOutput:
        policy = self.policy
        prompts = build_prompts(input_ids, attention_mask, mm_token_type_ids, video_embeddings, policy.video_token_id)
        sampling = [sampling_params_for(params, policy, index) for index in range(len(prompts))]
        if self._tp_group is None:
            outputs = self._llm.generate(prompts, sampling, use_tqdm=False)
        else:
            outputs = self._generate_pooled(prompts, sampling)
        tokens = [[list(c.token_ids) for c in sorted(o.outputs, key=lambda c: c.index)] for o in outputs]
        if video_embeddings is not None:
            video_embeddings = video_embeddings.to(policy.device)
        return build_generation_output(
            tokens, input_ids, attention_mask, mm_token_type_ids, video_embeddings, params, policy
        )

    def _generate_pooled(self, prompts: list[dict], sampling: list) -> list:
        # vLLM's external launcher expects identical requests on every rank of a tensor-parallel group.
        group = self._tp_group
        size, rank = torch.distributed.get_world_size(group), torch.distributed.get_rank(group)
        pooled: list[Any] = [None] * size
        torch.distributed.all_gather_object(pooled, (prompts, sampling), group=group)
        all_prompts = [p for ranks_prompts, _ in pooled for p in ranks_prompts]
        all_sampling = [s for _, ranks_sampling in pooled for s in ranks_sampling]
        outputs = self._llm.generate(all_prompts, all_sampling, use_tqdm=False)
        start = sum(len(ranks_prompts) for ranks_prompts, _ in pooled[:rank])
        return outputs[start : start + len(prompts)]


def weights_to_sync(policy: VideoLMPolicy, everything: bool = False) -> Iterator[tuple[str, Tensor]]:
    """``(name, tensor)`` pairs of the policy's weights that vLLM needs, detached, in the policy's own names.

    The vision tower is left out while it is frozen (its weights never change, and vLLM never runs it: videos
    arrive as embeddings) unless ``everything``. vLLM's ``load_weights`` maps the transformers names itself.
    """
    vision = {id(p) for p in policy.vision_parameters()}
    skip_vision = not everything and not any(p.requires_grad for p in policy.vision_parameters())
    for name, param in policy.model.named_parameters():
        if not (skip_vision and id(param) in vision):
            yield name, param.detach()


def reload_in_place(model, weights: list[tuple[str, Tensor]], model_config, vision: bool) -> set[str]:
    """Runs inside vLLM: write ``weights`` into ``model`` in place; returns the parameters that got no value.

    vLLM's layerwise reload re-runs each layer's post-load processing (on CPU the linear weights are repacked
    for oneDNN and the plain tensors dropped, so a bare ``load_weights`` has nothing to write into) and keeps
    tensor storage in place (CUDA graphs stay valid). Without ``vision`` only the language model is reloaded,
    so the untouched vision tower is neither reprocessed nor reported as missing.
    """
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    target = model if vision else model.language_model
    prefix = "" if vision else "language_model."
    expected = {prefix + name for name, _ in target.named_parameters()}
    initialize_layerwise_reload(target)
    loaded = model.load_weights(weights)
    finalize_layerwise_reload(target, model_config)
    return expected - set(loaded)


def _check_arguments(
    tensor_parallel_size: int,
    gpu_memory_utilization: float,
    kv_cache_memory_bytes: int | None,
    sleep_level: int,
    dtype: str,
) -> None:
    if tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if kv_cache_memory_bytes is not None and kv_cache_memory_bytes < 1:
        raise ValueError(f"kv_cache_memory_bytes must be >= 1 or None, got {kv_cache_memory_bytes}")
    if sleep_level not in (1, 2):
        raise ValueError(f"sleep_level must be 1 (offload weights) or 2 (discard weights), got {sleep_level}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPES)}")


def _distributed() -> bool:
    return torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _tensor_parallel_group(size: int):
    """This rank's group of ``size`` consecutive ranks (vLLM's external launcher shards over the same ranks)."""
    if not _distributed() or torch.distributed.get_world_size() % size:
        raise RuntimeError(
            f"tensor_parallel_size={size} needs a distributed launch whose world size is a multiple of it "
            "(torchrun, or Lightning DDP with devices >= tensor_parallel_size)"
        )
    group, _ = torch.distributed.new_subgroups(group_size=size)
    return group


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global RNG states after the block."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def _release_vllm_state() -> None:
    # vLLM keeps its parallel state in module globals; clear it so another engine can start in this process.
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    destroy_model_parallel()
    if not _distributed():
        destroy_distributed_environment()  # the single-process group vLLM made for itself, never the trainer's
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
