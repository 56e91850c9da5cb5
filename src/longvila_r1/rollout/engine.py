"""The rollout engine interface: sample G responses per prompt from cached video embeddings.

GRPO needs many samples per step, and the fastest way to draw them differs by machine: the policy's own
transformers ``generate`` on a CPU or a small GPU run, a vLLM server with its own copy of the weights on a
large one. :class:`RolloutEngine` is the one interface the GRPO module and the rollout callback talk to;
:class:`SamplingParams` is the one description of how to sample, whichever engine does it.

Every engine takes the prompt's precomputed :class:`~longvila_r1.models.VideoEmbeddings` (the paper's
"cached embeddings are reused for all G rollouts"), so no engine runs the vision tower again.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from longvila_r1.models.generation import GenerationOutput, check_left_padded

if TYPE_CHECKING:
    from longvila_r1.models.embeddings import VideoEmbeddings
    from longvila_r1.models.policy import VideoLMPolicy


@dataclass(frozen=True)
class SamplingParams:
    """How to sample responses, independent of the engine that samples them.

    Args:
        max_new_tokens: most tokens generated per response (the stop token included).
        temperature: softmax temperature; ``0`` means greedy decoding.
        top_p: nucleus sampling mass in ``(0, 1]`` (``1`` disables it).
        top_k: keep only the ``k`` most likely tokens (``0`` disables it).
        n: samples per prompt (GRPO's group size G); output row ``b * n + g`` is sample ``g`` of prompt ``b``.
        seed: makes sampling reproducible (same seed, same inputs -> same tokens); ``None`` draws from the
            global RNG.
        stop_token_ids: ids that end a response; ``None`` means the tokenizer's EOS.
        greedy: decode greedily whatever the temperature (the validation/eval setting).

    Example:
        >>> params = SamplingParams(max_new_tokens=512, temperature=1.0, n=8, seed=0)
        >>> SamplingParams(temperature=0).is_greedy
        True

        In YAML (under the GRPO module's ``init_args``):

        .. code-block:: yaml

            sampling:
              max_new_tokens: 512
              temperature: 1.0
              top_p: 1.0
              n: 8
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    seed: int | None = None
    stop_token_ids: tuple[int, ...] | None = None
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.n < 1:
            raise ValueError(f"n (samples per prompt) must be >= 1, got {self.n}")
        if self.stop_token_ids is not None:
            # A list from YAML becomes a tuple, so the params stay hashable and immutable.
            stop = tuple(int(i) for i in self.stop_token_ids)
            if not stop:
                raise ValueError("stop_token_ids must name at least one token id, or be None for the tokenizer's EOS")
            object.__setattr__(self, "stop_token_ids", stop)

    @property
    def is_greedy(self) -> bool:
        """Whether decoding is greedy (``greedy=True`` or ``temperature == 0``)."""
        return self.greedy or self.temperature == 0

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`VideoLMPolicy.generate` for these params (``n`` excluded)."""
        greedy = self.is_greedy
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": not greedy,
            # The policy validates temperature only when sampling; 1.0 keeps greedy calls valid.
            "temperature": 1.0 if greedy else self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "stop_token_ids": None if self.stop_token_ids is None else list(self.stop_token_ids),
        }


class RolloutEngine(ABC):
    """Samples responses to video prompts; the lifecycle is ``setup -> (generate | sync | sleep/wake)* -> teardown``.

    Subclasses implement :meth:`_generate` and, if they keep their own copy of the weights
    (``holds_own_weights = True``), :meth:`_load_weights`; :meth:`_setup`, :meth:`_sleep`, :meth:`_wake_up`
    and :meth:`_teardown` are optional hooks. The public methods here do the state checks, so every engine
    fails the same readable way when used out of order.

    Attributes:
        holds_own_weights: ``True`` for engines with a separate copy of the weights (vLLM), which must be
            refreshed by :meth:`sync_weights` after each optimizer step; ``False`` for engines that generate
            with the policy module itself.

    Example:
        >>> engine = TransformersEngine(max_batch_size=32)
        >>> engine.setup(policy)
        >>> out = engine.generate(ids, mask, types, video_embeddings, SamplingParams(n=8, seed=step))
        >>> seconds = engine.sync_weights(policy)  # after optimizer.step(); 0.0 when weights are shared
        >>> engine.teardown()
    """

    holds_own_weights: ClassVar[bool] = False

    def __init__(self) -> None:
        self._policy: VideoLMPolicy | None = None
        self._asleep = False

    @property
    def is_setup(self) -> bool:
        """Whether :meth:`setup` has run (and :meth:`teardown` has not since)."""
        return self._policy is not None

    @property
    def is_asleep(self) -> bool:
        """Whether :meth:`sleep` has run without a :meth:`wake_up` after it."""
        return self._asleep

    @property
    def policy(self) -> VideoLMPolicy:
        """The policy given to :meth:`setup`."""
        return self._require_setup()

    def _require_setup(self) -> VideoLMPolicy:
        if self._policy is None:
            raise RuntimeError(f"{type(self).__name__} is not set up: call engine.setup(policy) before using it")
        return self._policy

    def setup(self, policy: VideoLMPolicy) -> None:
        """Bind the engine to ``policy`` (and, for engines holding their own weights, load them)."""
        if self._policy is not None:
            raise RuntimeError(f"{type(self).__name__} is already set up; call teardown() before setting it up again")
        self._setup(policy)
        self._policy = policy
        self._asleep = False

    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        mm_token_type_ids: Tensor,
        video_embeddings: VideoEmbeddings | None,
        params: SamplingParams,
    ) -> GenerationOutput:
        """Sample ``params.n`` responses per left-padded prompt, reusing ``video_embeddings``.

        Args:
            input_ids: left-padded prompts. ``[B, P]``
            attention_mask: 1 on prompt tokens. ``[B, P]``
            mm_token_type_ids: 0 text, 2 video. ``[B, P]``
            video_embeddings: the prompts' videos in placeholder order, or ``None`` for text-only prompts.
            params: how to sample.

        Returns:
            A :class:`GenerationOutput` with ``B * n`` rows, row ``b * n + g`` being sample ``g`` of prompt ``b``.
        """
        self._require_setup()
        if self._asleep:
            raise RuntimeError(f"{type(self).__name__} is asleep: call wake_up() before generate()")
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        shapes = {tuple(t.shape) for t in (input_ids, attention_mask, mm_token_type_ids)}
        if input_ids.dim() != 2 or len(shapes) != 1:
            raise ValueError(
                "input_ids, attention_mask and mm_token_type_ids must all be [B, P]; got "
                f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(mm_token_type_ids.shape)}"
            )
        check_left_padded(attention_mask)
        out = self._generate(input_ids, attention_mask, mm_token_type_ids, video_embeddings, params)
        if out.sequences.shape[0] != input_ids.shape[0] * params.n:
            raise RuntimeError(f"{type(self).__name__} returned {out.sequences.shape[0]} rows, expected B*n")
        return out

    def sync_weights(self, policy: VideoLMPolicy) -> float:
        """Copy ``policy``'s current weights into the engine; returns the seconds it took (0.0 if shared)."""
        self._require_setup()
        if not self.holds_own_weights:
            return 0.0
        start = time.perf_counter()
        self._load_weights(policy)
        return time.perf_counter() - start

    def sleep(self) -> None:
        """Free the engine's memory (KV cache, its weights) between rollouts, e.g. for the training step."""
        self._require_setup()
        if not self._asleep:
            self._sleep()
            self._asleep = True

    def wake_up(self) -> None:
        """Reclaim what :meth:`sleep` freed, ready to generate again."""
        self._require_setup()
        if self._asleep:
            self._wake_up()
            self._asleep = False

    def teardown(self) -> None:
        """Release everything; safe to call twice or without a setup."""
        if self._policy is not None:
            self._teardown()
        self._policy, self._asleep = None, False

    # ------------------------------------------------------------------ hooks for subclasses
    @abstractmethod
    def _generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        mm_token_type_ids: Tensor,
        video_embeddings: VideoEmbeddings | None,
        params: SamplingParams,
    ) -> GenerationOutput:
        """Engine-specific sampling; inputs are already validated."""

    def _setup(self, policy: VideoLMPolicy) -> None:  # noqa: B027 -- optional hook
        """Start the engine (an engine holding its own weights loads them here)."""

    def _load_weights(self, policy: VideoLMPolicy) -> None:
        raise NotImplementedError(f"{type(self).__name__} holds its own weights and must implement _load_weights")

    def _sleep(self) -> None:  # noqa: B027 -- optional hook
        """Free memory; the default keeps everything."""

    def _wake_up(self) -> None:  # noqa: B027 -- optional hook
        """Undo :meth:`_sleep`."""

    def _teardown(self) -> None:  # noqa: B027 -- optional hook
        """Release resources."""
