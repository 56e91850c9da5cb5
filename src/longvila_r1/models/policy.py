"""The policy: a Qwen-VL model that encodes each video once and reuses the embeddings everywhere else.

:class:`VideoLMPolicy` wraps a transformers ``...ForConditionalGeneration`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).
The vision tower runs only in :meth:`VideoLMPolicy.encode_video`; ``forward``, ``response_logprobs`` and
``generate`` take the resulting :class:`VideoEmbeddings` and hand them to transformers as
``mm_encoder_outputs``, which makes the language model skip its own encoding and gives results identical to
the pixel route (Qwen3-VL's deepstack features included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from longvila_r1.models.embeddings import VideoEmbeddings, check_qwen3_frame_groups, video_tokens_per_row
from longvila_r1.models.generation import (
    GenerationOutput,
    build_output,
    check_left_padded,
    check_sampling_args,
    eval_mode,
    generation_config,
    seeded,
)
from longvila_r1.models.logprobs import score_mask, token_logprobs
from longvila_r1.models.presets import FAMILIES, PRESETS, TinyPreset, tiny_config

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
DEFAULT_FAMILY = "qwen2_5_vl"


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")


def resolve_dtype(dtype: str) -> torch.dtype | str:
    """Map a dtype name to a ``torch.dtype`` (``"auto"`` stays ``"auto"``: the checkpoint's own dtype)."""
    _check_choice("dtype", dtype, list(DTYPES))
    return DTYPES[dtype]


def check_attn_implementation(attn_implementation: str) -> str:
    """Validate ``attn_implementation``; flash attention only where the ``flash_attn`` package imports."""
    _check_choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS)
    if attn_implementation == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except Exception as err:  # a CUDA-less build fails with OSError/RuntimeError, not only ImportError
            raise ImportError(
                'attn_implementation="flash_attention_2" needs the flash-attn package: '
                'pip install "longvila-r1[flash]" (CUDA only), or use "sdpa"'
            ) from err
    return attn_implementation


class VideoLMPolicy(nn.Module):
    """A Qwen-VL model plus its tokenizer, with video encoding split from the language model.

    Args:
        model: a ``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration`` or
            ``Qwen3VLForConditionalGeneration``.
        tokenizer: its tokenizer (``eos_token_id`` ends responses, ``pad_token_id`` pads them).
        freeze_vision: stop gradients into the vision tower (``requires_grad=False``).
        gradient_checkpointing: recompute decoder (and vision) blocks in backward to save activation memory.

    Example:
        >>> policy = VideoLMPolicy.build("tiny", family="qwen3_vl", seed=0)
        >>> emb = policy.encode_video(pixel_values_videos, video_grid_thw)  # the vision tower runs here only
        >>> logits = policy(input_ids, attention_mask, mm_token_type_ids, video_embeddings=emb)  # [B, S, V]
        >>> out = policy.generate(prompt_ids, prompt_mask, prompt_types, emb, max_new_tokens=64,
        ...                       num_return_sequences=8, seed=0)
        >>> logprobs = policy.response_logprobs(out.sequences, out.attention_mask, out.mm_token_type_ids,
        ...                                     out.video_embeddings, prompt_lengths=out.prompt_length)
    """

    def __init__(
        self, model: nn.Module, tokenizer, *, freeze_vision: bool = False, gradient_checkpointing: bool = False
    ) -> None:
        super().__init__()
        _check_choice("model.config.model_type", model.config.model_type, FAMILIES)
        self.model = model
        self.tokenizer = tokenizer
        self.family: str = model.config.model_type
        self.set_vision_trainable(not freeze_vision)
        if gradient_checkpointing:
            _enable_checkpointing(model)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        path: str = "tiny",
        family: str | None = None,
        *,
        seed: int = 0,
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        freeze_vision: bool = False,
        gradient_checkpointing: bool = False,
        **preset_overrides: int,
    ) -> VideoLMPolicy:
        """Build from a preset name (``"tiny"``, ``"small"``) or load from a local checkpoint directory.

        ``family`` picks the architecture of a preset (default ``"qwen2_5_vl"``); for a checkpoint it is
        optional and, if given, must match the checkpoint. ``preset_overrides`` are :class:`TinyPreset` fields.

        Example:
            >>> VideoLMPolicy.build("tiny", family="qwen2_5_vl", text_layers=4)  # in YAML: model.path: tiny
        """
        options = {
            "dtype": dtype,
            "attn_implementation": attn_implementation,
            "freeze_vision": freeze_vision,
            "gradient_checkpointing": gradient_checkpointing,
        }
        if path in PRESETS:
            return cls.from_preset(path, family or DEFAULT_FAMILY, seed=seed, **options, **preset_overrides)
        if not Path(path).is_dir():
            raise ValueError(f"path={path!r} is neither a preset ({sorted(PRESETS)}) nor an existing directory")
        if preset_overrides:
            raise ValueError(f"preset overrides {sorted(preset_overrides)} only apply to presets, not to {path!r}")
        return cls.from_pretrained(path, family=family, **options)

    @classmethod
    def from_preset(
        cls,
        preset: str | TinyPreset = "tiny",
        family: str = DEFAULT_FAMILY,
        *,
        seed: int = 0,
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        freeze_vision: bool = False,
        gradient_checkpointing: bool = False,
        **overrides: int,
    ) -> VideoLMPolicy:
        """A randomly initialised model of ``family`` with preset sizes and the packaged tiny tokenizer.

        The same ``seed`` gives the same weights; the global RNG state is left untouched.
        """
        from transformers import AutoModelForImageTextToText

        from longvila_r1.models.tokenizer import load_tiny_tokenizer

        torch_dtype = resolve_dtype(dtype)
        attn = check_attn_implementation(attn_implementation)
        tokenizer = load_tiny_tokenizer()
        config = tiny_config(family, vocab_size=len(tokenizer), preset=preset, **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForImageTextToText.from_config(
                config, attn_implementation=attn, dtype=torch.float32 if torch_dtype == "auto" else torch_dtype
            )
        return cls(model, tokenizer, freeze_vision=freeze_vision, gradient_checkpointing=gradient_checkpointing)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        family: str | None = None,
        *,
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        freeze_vision: bool = False,
        gradient_checkpointing: bool = False,
    ) -> VideoLMPolicy:
        """Load a model and tokenizer saved in HF format in the local directory ``path``."""
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

        torch_dtype = resolve_dtype(dtype)
        attn = check_attn_implementation(attn_implementation)
        model_type = AutoConfig.from_pretrained(path).model_type
        _check_choice(f"model_type of {path}", model_type, FAMILIES)
        if family is not None and family != model_type:
            raise ValueError(f"family={family!r} but the checkpoint at {path} is {model_type!r}")
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype, attn_implementation=attn)
        # from_pretrained returns eval mode; a loaded policy is trained like a built one (Lightning warns about
        # modules left in eval mode), and generation switches to eval mode on its own.
        model.train()
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, freeze_vision=freeze_vision, gradient_checkpointing=gradient_checkpointing)

    def save_pretrained(self, output_dir: str | Path) -> Path:
        """Write config, safetensors weights, generation config, tokenizer and chat template (HF format)."""
        output_dir = Path(output_dir)
        self.model.save_pretrained(output_dir)
        self.tokenizer.save_pretrained(output_dir)
        return output_dir

    # ------------------------------------------------------------------ attributes
    @property
    def config(self):
        return self.model.config

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.model.visual

    @property
    def merge_size(self) -> int:
        return self.config.vision_config.spatial_merge_size

    @property
    def patch_size(self) -> int:
        return self.config.vision_config.patch_size

    @property
    def temporal_patch_size(self) -> int:
        return self.config.vision_config.temporal_patch_size

    @property
    def video_token_id(self) -> int:
        return self.config.video_token_id

    @property
    def vision_placeholder_ids(self) -> list[int]:
        """Ids of the vision placeholder tokens (image/video pads, vision start/end) of the model config."""
        names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        return [int(getattr(self.config, n)) for n in names if getattr(self.config, n, None) is not None]

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    def vision_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the vision tower (patch embedding, blocks, merger(s))."""
        return self.vision_tower.parameters()

    def language_parameters(self) -> Iterator[nn.Parameter]:
        """Every other parameter: embeddings, decoder layers, final norm, LM head."""
        vision = {id(p) for p in self.vision_parameters()}
        return (p for p in self.model.parameters() if id(p) not in vision)

    def set_vision_trainable(self, trainable: bool) -> None:
        """Freeze (``False``) or unfreeze the vision tower."""
        self.vision_tower.requires_grad_(trainable)

    # ------------------------------------------------------------------ compute
    def encode_video(
        self, pixel_values_videos: Tensor, video_grid_thw: Tensor, second_per_grid_ts: Tensor | None = None
    ) -> VideoEmbeddings:
        """Run the vision tower on a batch of videos.

        Args:
            pixel_values_videos: flattened patches of all videos. ``[N_patches, 3*T_p*P*P]``
            video_grid_thw: patch grid of each video. ``[V, 3]``
            second_per_grid_ts: Qwen2.5-VL only, seconds per temporal patch of each video. ``[V]``
        """
        out = self.model.model.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)
        deepstack = getattr(out, "deepstack_features", None)
        return VideoEmbeddings(
            embeds=torch.cat(out.pooler_output),  # [N, D]
            grid_thw=video_grid_thw,
            merge_size=self.merge_size,
            deepstack=None if deepstack is None else [torch.cat(layer) for layer in deepstack],
            second_per_grid_ts=second_per_grid_ts,
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        mm_token_type_ids: Tensor | None = None,
        video_embeddings: VideoEmbeddings | None = None,
        pixel_values_videos: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        second_per_grid_ts: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits ``[B, S, V]`` from precomputed ``video_embeddings`` or from pixels.

        ``mm_token_type_ids`` (0 text, 2 video) is required with videos: it is what M-RoPE positions are
        computed from. Pixels go through :meth:`encode_video` first, so both routes give identical logits.
        """
        if pixel_values_videos is not None:
            if video_embeddings is not None:
                raise ValueError("pass either video_embeddings or pixel_values_videos, not both")
            if video_grid_thw is None:
                raise ValueError("pixel_values_videos needs video_grid_thw")
            video_embeddings = self.encode_video(pixel_values_videos, video_grid_thw, second_per_grid_ts)
        hidden = self.hidden_states(input_ids, attention_mask, mm_token_type_ids, video_embeddings)  # [B, S, D]
        return self.model.lm_head(hidden)  # [B, S, V]

    def hidden_states(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        mm_token_type_ids: Tensor | None,
        video_embeddings: VideoEmbeddings | None,
    ) -> Tensor:
        """Final-norm hidden states of the language model. ``[B, S, D]``"""
        kwargs = self._video_kwargs(mm_token_type_ids, video_embeddings)
        self._reset_rope_cache()
        out = self.model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        return out.last_hidden_state

    def response_logprobs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        mm_token_type_ids: Tensor | None,
        video_embeddings: VideoEmbeddings | None,
        response_mask: Tensor | None = None,
        prompt_lengths: Tensor | int | None = None,
        temperature: float = 1.0,
        return_entropy: bool = False,
        chunk_size: int = 1024,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Log-prob of each next token, ``[B, S-1]`` fp32, zero outside the scored tokens.

        Entry ``t`` is ``log p(input_ids[:, t+1] | input_ids[:, :t+1])``. Only scored tokens reach the LM head,
        in chunks, so a long video prompt costs no vocabulary-sized activations.

        Args:
            input_ids, attention_mask, mm_token_type_ids, video_embeddings: as in :meth:`forward`. ``[B, S]``
            response_mask: 1 on the tokens to score. ``[B, S]``
            prompt_lengths: alternatively, the index of each row's first response token (``[B]`` or an int,
                e.g. ``GenerationOutput.prompt_length``); every later non-padding token is scored.
            temperature: divide logits by it (match the sampling temperature).
            return_entropy: also return the entropy of each predictive distribution, ``[B, S-1]``.
            chunk_size: scored tokens per LM-head chunk.
        """
        mask = score_mask(input_ids, attention_mask, response_mask, prompt_lengths)  # [B, S-1]
        hidden = self.hidden_states(input_ids, attention_mask, mm_token_type_ids, video_embeddings)  # [B, S, D]
        labels = input_ids[:, 1:][mask]  # [N]
        logprobs, entropy = token_logprobs(hidden[:, :-1][mask], labels, self.model.lm_head, temperature, chunk_size)
        zeros = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)  # [B, S-1]
        logprobs = zeros.masked_scatter(mask, logprobs)
        return (logprobs, zeros.masked_scatter(mask, entropy)) if return_entropy else logprobs

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        mm_token_type_ids: Tensor,
        video_embeddings: VideoEmbeddings | None = None,
        *,
        max_new_tokens: int = 256,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        num_return_sequences: int = 1,
        seed: int | None = None,
        stop_token_ids: Sequence[int] | None = None,
    ) -> GenerationOutput:
        """Sample (or greedily decode) responses to left-padded prompts, reusing ``video_embeddings``.

        The model runs in eval mode for the call (mode restored after). Each prompt's embeddings are repeated
        for its ``num_return_sequences`` samples; the vision tower does not run. ``seed`` makes sampling
        reproducible without touching the global RNG. ``stop_token_ids`` defaults to the tokenizer's EOS.
        """
        check_left_padded(attention_mask)
        check_sampling_args(max_new_tokens, do_sample, temperature, top_p, top_k, num_return_sequences)
        stop_ids = [self.tokenizer.eos_token_id] if stop_token_ids is None else list(stop_token_ids)
        if not stop_ids:
            raise ValueError("stop_token_ids must name at least one token id")
        pad_id = self.tokenizer.pad_token_id
        if num_return_sequences > 1:
            if video_embeddings is not None:
                tokens_per_row = video_tokens_per_row(mm_token_type_ids)
                video_embeddings = video_embeddings.repeat_rows(tokens_per_row, num_return_sequences)
            input_ids, attention_mask, mm_token_type_ids = (
                t.repeat_interleave(num_return_sequences, dim=0) for t in (input_ids, attention_mask, mm_token_type_ids)
            )
        config = generation_config(
            max_new_tokens, do_sample, temperature, top_p, top_k, stop_ids, pad_id, self.vision_placeholder_ids
        )
        kwargs = self._video_kwargs(mm_token_type_ids, video_embeddings)
        self._reset_rope_cache()
        with eval_mode(self.model), seeded(seed, self.device):
            sequences = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **kwargs
            )  # [B*G, P+L]
        self._reset_rope_cache()
        return build_output(sequences, attention_mask, mm_token_type_ids, video_embeddings, stop_ids, pad_id)

    # ------------------------------------------------------------------ helpers
    def _reset_rope_cache(self) -> None:
        # transformers caches M-RoPE deltas on the model between calls; stale deltas from an earlier batch
        # would shift the positions of the next one.
        self.model.model.rope_deltas = None

    def _video_kwargs(self, mm_token_type_ids: Tensor | None, video_embeddings: VideoEmbeddings | None) -> dict:
        kwargs = {"mm_token_type_ids": mm_token_type_ids}
        if video_embeddings is None:
            return kwargs
        if mm_token_type_ids is None:
            # Without it transformers silently falls back to 1-D positions for the video tokens.
            raise ValueError("mm_token_type_ids is required with videos (M-RoPE positions are computed from it)")
        if self.family == "qwen3_vl":
            check_qwen3_frame_groups(mm_token_type_ids, video_embeddings.grid_thw)
        kwargs["video_grid_thw"] = video_embeddings.grid_thw
        # A fresh output object per call: transformers' generate rewrites it in place.
        kwargs["mm_encoder_outputs"] = {"video": video_embeddings.to_encoder_output()}
        if video_embeddings.second_per_grid_ts is not None:
            if self.family != "qwen2_5_vl":
                raise ValueError(f"second_per_grid_ts is a qwen2_5_vl input; this model is {self.family!r}")
            kwargs["second_per_grid_ts"] = video_embeddings.second_per_grid_ts
        return kwargs


def _enable_checkpointing(model: nn.Module) -> None:
    # Non-reentrant checkpointing works when the inputs (token ids) do not require grad. transformers 5.23
    # renamed the method; older 5.x releases only have `gradient_checkpointing_enable`.
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
