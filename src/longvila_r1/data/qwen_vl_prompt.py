"""The token side of Qwen-VL video prompts: chat template, ``<|video_pad|>`` expansion, ``mm_token_type_ids``, labels.

HF's Qwen-VL processors render the chat template (one ``<|vision_start|><|video_pad|><|vision_end|>`` per video),
replace the single ``<|video_pad|>`` by ``t * h * w / merge_size**2`` copies (Qwen3-VL: one
``<t seconds><|vision_start|>...<|vision_end|>`` block per temporal group) and mark video tokens with
``mm_token_type_ids == 2``, which transformers 5 needs for M-RoPE. :func:`build_prompt` does the same on token
ids, and appends the assistant response with its labels so SFT and RL share one prompt format.

Example:
    >>> from longvila_r1.models.tokenizer import load_tiny_tokenizer
    >>> enc = build_prompt(load_tiny_tokenizer(), "What happens first?", ["a dog runs", "a cat sits"],
    ...                    video_grid_thw=[2, 4, 6], response="<think>...</think><answer>A</answer>")
    >>> int((enc.mm_token_type_ids == 2).sum()), enc.labels[: enc.prompt_length].eq(-100).all().item()
    (12, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from longvila_r1.data.qwen_vl import num_video_tokens

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_INSTRUCTION = (
    "Think step by step inside <think></think> tags, then give the letter of the correct option inside "
    "<answer></answer> tags."
)
IGNORE_INDEX = -100
VIDEO_PAD, IMAGE_PAD = "<|video_pad|>", "<|image_pad|>"
VISION_START, VISION_END, IM_END = "<|vision_start|>", "<|vision_end|>", "<|im_end|>"
# mm_token_type_ids values, as transformers' ProcessorMixin.create_mm_token_type_ids assigns them.
TEXT_TYPE, IMAGE_TYPE, VIDEO_TYPE = 0, 1, 2


@dataclass
class PromptEncoding:
    """One tokenised video prompt (and optionally its response); all tensors are 1-D of the same length ``[S]``.

    Attributes:
        input_ids: token ids, the ``<|video_pad|>`` already expanded.
        mm_token_type_ids: 0 text, 1 image, 2 video (``<|video_pad|>`` positions only).
        attention_mask: ones.
        labels: ``-100`` except on the response tokens and its closing ``<|im_end|>``; ``None`` without response.
        prompt_length: number of prompt tokens (the response, if any, starts there).
    """

    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    prompt_length: int

    def __len__(self) -> int:
        return self.input_ids.numel()


def format_question(
    problem: str, options: Sequence[str] | None = None, instruction: str | None = DEFAULT_INSTRUCTION
) -> str:
    """The user text after the video: the problem, one ``"A. ..."`` line per option, then the instruction.

    Example:
        >>> print(format_question("Why?", ["rain", "sun"], instruction="Answer."))
        Why?
        A. rain
        B. sun
        Answer.
    """
    if options is not None and len(options) > 26:
        raise ValueError(f"at most 26 options can be lettered, got {len(options)}")
    lines = [problem.strip(), *(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options or ()))]
    if instruction:
        lines.append(instruction)
    return "\n".join(lines)


def special_token_id(tokenizer: Any, token: str) -> int:
    """Id of a special token the tokenizer must know (a clear error instead of a silent ``unk``)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"the tokenizer has no {token!r} token; a Qwen-VL tokenizer is needed")
    return int(token_id)


def video_placeholder_ids(
    tokenizer: Any,
    video_grid_thw: torch.Tensor | Sequence[int],
    merge_size: int = 2,
    timestamps: Sequence[float] | None = None,
) -> list[int]:
    """The ids that replace one ``<|video_pad|>`` of the rendered template.

    Without ``timestamps`` (Qwen2/2.5-VL): ``t * h * w / merge_size**2`` pad ids. With one timestamp per temporal
    group (Qwen3-VL, see :func:`~longvila_r1.data.qwen_vl.group_timestamps`): per group
    ``<{t:.1f} seconds><|vision_start|>`` + ``h * w / merge_size**2`` pads + ``<|vision_end|>``.
    """
    pad = special_token_id(tokenizer, VIDEO_PAD)
    if timestamps is None:
        return [pad] * num_video_tokens(video_grid_thw, merge_size)
    t, h, w = (int(v) for v in video_grid_thw)
    if len(timestamps) != t:
        raise ValueError(f"expected one timestamp per temporal group ({t}), got {len(timestamps)}")
    start, end = special_token_id(tokenizer, VISION_START), special_token_id(tokenizer, VISION_END)
    frame_pads = [pad] * (h * w // merge_size**2)
    ids: list[int] = []
    for seconds in timestamps:
        # The stamp sits between special tokens, so encoding it alone gives the ids it gets in context.
        ids += tokenizer.encode(f"<{seconds:.1f} seconds>", add_special_tokens=False)
        ids += [start, *frame_pads, end]
    return ids


def render_prompt(
    tokenizer: Any,
    problem: str,
    options: Sequence[str] | None = None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    instruction: str | None = DEFAULT_INSTRUCTION,
) -> str:
    """The chat-template text of the prompt, with a single ``<|video_pad|>`` (as HF renders it before expansion)."""
    messages: list[dict[str, Any]] = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    content = [{"type": "video"}, {"type": "text", "text": format_question(problem, options, instruction)}]
    messages.append({"role": "user", "content": content})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_prompt(
    tokenizer: Any,
    problem: str,
    options: Sequence[str] | None = None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    *,
    video_grid_thw: torch.Tensor | Sequence[int],
    merge_size: int = 2,
    response: str | None = None,
    instruction: str | None = DEFAULT_INSTRUCTION,
    timestamps: Sequence[float] | None = None,
) -> PromptEncoding:
    """Tokenise a one-video question for a Qwen-VL model, optionally with the SFT response and its labels.

    Args:
        tokenizer: a Qwen-VL tokenizer with a chat template (e.g. ``load_tiny_tokenizer()``).
        problem: the question text.
        options: option texts, lettered ``A.``, ``B.``, ... on their own lines; ``None`` when the problem already
            lists them.
        system_prompt: the system turn; ``None`` leaves it to the template's default.
        video_grid_thw: the video's ``(t, h, w)`` patch grid from :func:`~longvila_r1.data.qwen_vl.preprocess_video`.
        merge_size: the vision tower's spatial merge size.
        response: the assistant text (``<think>...</think><answer>X</answer>``) for SFT; tokenised on its own after
            ``<|im_start|>assistant\\n``, exactly as a generated rollout would be, and closed with ``<|im_end|>``.
        instruction: the reasoning-format instruction appended to the question (``None`` for none).
        timestamps: seconds per temporal group for Qwen3-VL's ``<t seconds>`` tokens (``config.timestamp_tokens``).

    Returns:
        A :class:`PromptEncoding`.

    Example:
        >>> enc = build_prompt(tokenizer, record.problem, record.options, video_grid_thw=grid,  # doctest: +SKIP
        ...                    response=record.response())
    """
    text = render_prompt(tokenizer, problem, options, system_prompt, instruction)
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    pad = special_token_id(tokenizer, VIDEO_PAD)
    where = [i for i, token in enumerate(ids) if token == pad]
    if len(where) != 1:
        # More than one means the question text itself contained <|video_pad|>; expanding either would misalign.
        raise ValueError(f"expected exactly one {VIDEO_PAD} in the rendered prompt, found {len(where)}")
    ids[where[0] : where[0] + 1] = video_placeholder_ids(tokenizer, video_grid_thw, merge_size, timestamps)
    prompt_length = len(ids)
    labels = None
    if response is not None:
        response_ids = [*tokenizer.encode(response, add_special_tokens=False), special_token_id(tokenizer, IM_END)]
        ids += response_ids
        labels = torch.tensor([IGNORE_INDEX] * prompt_length + response_ids, dtype=torch.long)
    input_ids = torch.tensor(ids, dtype=torch.long)
    return PromptEncoding(
        input_ids=input_ids,
        mm_token_type_ids=mm_token_type_ids(tokenizer, input_ids),
        attention_mask=torch.ones_like(input_ids),
        labels=labels,
        prompt_length=prompt_length,
    )


def mm_token_type_ids(tokenizer: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """0 for text, 1 for ``<|image_pad|>``, 2 for ``<|video_pad|>`` (vision start/end and timestamps stay text).

    Example:
        >>> mm_token_type_ids(tokenizer, enc.input_ids)  # doctest: +SKIP
    """
    types = torch.full_like(input_ids, TEXT_TYPE)
    types[input_ids == special_token_id(tokenizer, IMAGE_PAD)] = IMAGE_TYPE
    types[input_ids == special_token_id(tokenizer, VIDEO_PAD)] = VIDEO_TYPE
    return types
