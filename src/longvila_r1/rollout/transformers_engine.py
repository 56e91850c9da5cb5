"""The default rollout engine: transformers ``generate`` with the policy's own weights.

It needs no second copy of the model and no weight sync, works on CPU and on any GPU, and is the reference
the vLLM engine is checked against. Large groups (``B * n`` rows) can be split into chunks of at most
``max_batch_size`` rows so the KV cache of one ``generate`` call fits in memory.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor
from typing_extensions import override

from longvila_r1.models.embeddings import VideoEmbeddings, video_tokens_per_row
from longvila_r1.models.generation import GenerationOutput, concat_outputs
from longvila_r1.rollout.engine import RolloutEngine, SamplingParams


class TransformersEngine(RolloutEngine):
    """Samples with :meth:`VideoLMPolicy.generate` on the policy itself, reusing the cached video embeddings.

    Args:
        max_batch_size: most rows (prompt samples) per ``generate`` call; ``B * n`` rows are split into
            consecutive chunks of this size. ``None`` generates all rows in one call. Greedy decoding gives the
            same tokens either way; seeded sampling is reproducible for a fixed ``max_batch_size`` (each chunk
            draws from its own seed derived from ``params.seed``), but differs from the unchunked draw.

    Example:
        >>> engine = TransformersEngine(max_batch_size=16)
        >>> engine.setup(policy)
        >>> out = engine.generate(ids, mask, types, emb, SamplingParams(max_new_tokens=256, n=8, seed=0))
        >>> out.response_ids.shape[0] == ids.shape[0] * 8
        True

        In YAML (under the GRPO module's ``init_args``):

        .. code-block:: yaml

            engine:
              class_path: longvila_r1.rollout.TransformersEngine
              init_args:
                max_batch_size: 32
    """

    holds_own_weights = False

    def __init__(self, max_batch_size: int | None = None) -> None:
        super().__init__()
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 or None (no chunking), got {max_batch_size}")
        self.max_batch_size = max_batch_size

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
        if video_embeddings is not None:
            # Cached embeddings live on CPU; a no-op when the caller already moved them.
            video_embeddings = video_embeddings.to(policy.device)
        kwargs = params.generate_kwargs()
        rows = input_ids.shape[0] * params.n
        if self.max_batch_size is None or rows <= self.max_batch_size:
            return policy.generate(
                input_ids, attention_mask, mm_token_type_ids, video_embeddings, num_return_sequences=params.n, **kwargs
            )
        # Expand to one row per sample first (the layout policy.generate builds), then cut rows into chunks.
        prompts = (input_ids, attention_mask, mm_token_type_ids)
        ids, mask, types = (t.repeat_interleave(params.n, dim=0) for t in prompts)  # [B*n, P] each
        offsets = None
        if video_embeddings is not None:
            video_embeddings = video_embeddings.repeat_rows(video_tokens_per_row(mm_token_type_ids), params.n)
            offsets = video_offsets(video_embeddings, types)
        outputs = []
        for index, chunk in enumerate(chunk_rows(rows, self.max_batch_size)):
            kwargs["seed"] = chunk_seed(params.seed, index)
            chunk_emb = None
            if offsets is not None and offsets[chunk.stop] > offsets[chunk.start]:
                chunk_emb = video_embeddings.select(range(offsets[chunk.start], offsets[chunk.stop]))
            outputs.append(policy.generate(ids[chunk], mask[chunk], types[chunk], chunk_emb, **kwargs))
        return concat_outputs(outputs, pad_id=policy.tokenizer.pad_token_id)

    @override
    def _sleep(self) -> None:
        # The weights are the policy's and stay; only the allocator's cached KV-cache blocks can be returned.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def chunk_rows(total: int, size: int) -> list[slice]:
    """Consecutive row slices of at most ``size`` rows covering ``range(total)``."""
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def chunk_seed(seed: int | None, index: int) -> int | None:
    """A seed for chunk ``index`` of a chunked call seeded with ``seed``.

    Hashed rather than ``seed + index``, so chunk 1 of step ``s`` does not replay chunk 0 of step ``s + 1``
    when a trainer seeds each step with ``base + step``.
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch.manual_seed wants a non-negative 63-bit int


def video_offsets(video_embeddings: VideoEmbeddings, mm_token_type_ids: Tensor) -> list[int]:
    """Index of the first video of each row, plus the total: row ``r`` owns videos ``offsets[r]:offsets[r+1]``."""
    counts = video_embeddings.videos_per_row(video_tokens_per_row(mm_token_type_ids))
    return [0, *torch.tensor(counts).cumsum(0).tolist()]
