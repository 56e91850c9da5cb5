"""Rollout: engines that sample responses from cached video embeddings, and the embedding cache.

vLLM is an optional extra and is never imported here (:class:`VLLMEngine` imports it when it is built):
jsonargparse imports every ``class_path`` while parsing, and a CPU machine must parse every YAML.

Example:
    >>> from longvila_r1.rollout import SamplingParams, TransformersEngine, VideoEmbeddingCache, cache_key
    >>> engine = TransformersEngine()
    >>> engine.setup(policy)
    >>> out = engine.generate(ids, mask, types, embeddings, SamplingParams(n=8, seed=0))
"""

from __future__ import annotations

from longvila_r1.rollout.cache import VideoEmbeddingCache, cpu_copy, select_video_patches
from longvila_r1.rollout.cache_key import CacheKey, cache_key, processor_hash, vision_fingerprint
from longvila_r1.rollout.disk_store import CorruptEntryError, EmbeddingDiskStore
from longvila_r1.rollout.engine import RolloutEngine, SamplingParams
from longvila_r1.rollout.transformers_engine import TransformersEngine
from longvila_r1.rollout.vllm_engine import VLLMEngine

__all__ = [
    "CacheKey",
    "CorruptEntryError",
    "EmbeddingDiskStore",
    "RolloutEngine",
    "SamplingParams",
    "TransformersEngine",
    "VLLMEngine",
    "VideoEmbeddingCache",
    "cache_key",
    "cpu_copy",
    "processor_hash",
    "select_video_patches",
    "vision_fingerprint",
]
