"""The tiny tokenizer shipped with the package, and the function that (re)builds it.

Real checkpoints bring their own tokenizer; this one exists so that the ``tiny`` preset, the tests and the
demo run with no model hub. It is a byte-level BPE trained on the synthetic LongVideo-Reason corpus, with the
Qwen-VL chat special tokens and a Qwen2-VL style chat template, so prompts look exactly like a real model's.

Rebuild it deterministically with ``python scripts/build_tokenizer.py``.

Example:
    >>> tokenizer = load_tiny_tokenizer()
    >>> tokenizer.convert_tokens_to_ids("<|video_pad|>") > 0
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

from transformers import PreTrainedTokenizerFast

TINY_TOKENIZER_PACKAGE_DIR = "assets/tokenizer"
ENDOFTEXT = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD, VISION_PAD = "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>"
# Added as ordinary (not special) tokens: decoding with skip_special_tokens=True must keep them, since the
# rewards and metrics read them. They are appended after the BPE vocabulary.
REASONING_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# Order fixes the ids 0..N-1, so the tiny model config can name them without reading the tokenizer.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD)

# Qwen2-VL's chat template (system prompt default, vision placeholders inside the user turn).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer_dir() -> Path:
    """Directory of the packaged tiny tokenizer (inside the installed package)."""
    return Path(str(resources.files("longvila_r1") / TINY_TOKENIZER_PACKAGE_DIR))


@lru_cache(maxsize=1)
def _load_cached(path: str) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(path)


def load_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Load the packaged tiny tokenizer (a fresh copy each call; the files are parsed once)."""
    path = tiny_tokenizer_dir()
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"tiny tokenizer missing at {path}; rebuild it: python scripts/build_tokenizer.py")
    return _copy(_load_cached(str(path)))


def _copy(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    import copy

    return copy.deepcopy(tokenizer)


def train_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` and wrap it with the Qwen-VL special tokens and chat template.

    Training is deterministic for a given corpus order (single-threaded, no random state).

    Args:
        corpus: texts to learn merges from.
        vocab_size: total vocabulary size, special tokens included.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(REASONING_TAGS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in REASONING_TAGS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def save_tiny_tokenizer(tokenizer: PreTrainedTokenizerFast, output_dir: str | Path) -> Path:
    """Write ``tokenizer`` (files, chat template) to ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(output_dir))
    return output_dir
