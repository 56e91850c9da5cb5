"""Rebuild the packaged tiny tokenizer from the synthetic LongVideo-Reason corpus, deterministically.

Usage:
    python scripts/build_tokenizer.py [--output-dir src/longvila_r1/assets/tokenizer] [--vocab-size 2048]

Running it twice writes byte-identical files: the corpus comes from a fixed seed and BPE training has no
random state.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from longvila_r1.models.tokenizer import save_tiny_tokenizer, train_tiny_tokenizer

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "src" / "longvila_r1" / "assets" / "tokenizer"
CORPUS_SEED = 1234
CORPUS_VIDEOS = {"easy": 400, "hard": 400}


def corpus() -> Iterator[str]:
    """Prompt scaffolding first, then questions, options and reasoning from the synthetic generator."""
    from longvila_r1.data.qwen_vl_prompt import DEFAULT_INSTRUCTION, DEFAULT_SYSTEM_PROMPT
    from longvila_r1.data.synth import iter_corpus_text

    yield from (DEFAULT_SYSTEM_PROMPT, DEFAULT_INSTRUCTION, "A. B. C. D.")
    for difficulty, num_videos in CORPUS_VIDEOS.items():
        yield from iter_corpus_text(seed=CORPUS_SEED, num_videos=num_videos, difficulty=difficulty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args()
    tokenizer = train_tiny_tokenizer(corpus(), vocab_size=args.vocab_size)
    save_tiny_tokenizer(tokenizer, args.output_dir)
    print(f"wrote {len(tokenizer)} tokens to {args.output_dir}")


if __name__ == "__main__":
    main()
