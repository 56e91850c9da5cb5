"""The packaged tiny tokenizer: fixed special ids, reasoning tags that survive decoding, deterministic rebuild."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from longvila_r1.models.tokenizer import SPECIAL_TOKENS, load_tiny_tokenizer, tiny_tokenizer_dir, train_tiny_tokenizer

REPO = Path(__file__).resolve().parents[3]


def test_special_tokens_have_fixed_ids_and_tags_decode():
    tokenizer = load_tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == 0
    text = "<think>at 0:03 a red square appears</think><answer>B</answer>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # metrics read the tags after decoding
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert tokenizer.convert_tokens_to_ids(tag) in ids


def test_chat_template_matches_qwen_layout():
    tokenizer = load_tiny_tokenizer()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_training_is_deterministic():
    corpus = ["the red square appears before the blue circle", "Which object appeared first?"] * 20
    first, second = train_tiny_tokenizer(corpus, 300), train_tiny_tokenizer(corpus, 300)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()


def test_build_script_reproduces_the_packaged_files(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_tokenizer.py"), "--output-dir", str(tmp_path)], check=True
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / name).read_bytes() == (tiny_tokenizer_dir() / name).read_bytes(), name
