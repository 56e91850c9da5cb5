"""Synthetic LongVideo-Reason: long videos of coloured shapes with multiple-choice reasoning questions.

Nothing can be downloaded in tests and demos, so videos are generated: objects of distinct colours and shapes
appear, move to each other, touch, flash and vanish along a long timeline, and questions in the four
LongVideo-Reason categories (temporal, goal and purpose, spatial, plot and narrative) are derived from the
event log, with chain-of-thought answers for CoT-SFT and evidence spans that say which frames must be seen.

Command line (wired by ``longvila_r1.cli``)::

    longvila-r1 data synth --output-dir DIR --num-videos N --frames F --seed S --difficulty easy

writes ``DIR/videos/vid_00000.mp4 ...``, ``DIR/train.jsonl``, ``DIR/val.jsonl``, ``DIR/eval.jsonl`` and
``DIR/synth_config.json``, and prints the :class:`SynthSummary` table. In Python::

    from longvila_r1.data.synth import generate_dataset
    summary = generate_dataset("outputs/demo/data", num_videos=200, frames=128, seed=0, difficulty="easy")
    print(summary.format_table())

Modules: ``scene`` (objects, tracks, event log), ``events`` (timeline simulation), ``render`` (numpy
rasteriser), ``narrative`` (phrases), ``templates`` (questions per category), ``questions`` (lettering and
reasoning), ``generator`` (files, splits, workers), ``summary`` and ``analysis`` (frame coverage, baselines).
"""

from longvila_r1.data.synth.analysis import (
    answer_text_baseline,
    determinable_fraction,
    evidence_coverage,
    longest_option_rate,
    question_only_baseline,
)
from longvila_r1.data.synth.generator import (
    generate_dataset,
    iter_corpus_text,
    render_video,
    synth_settings,
    video_records,
)
from longvila_r1.data.synth.questions import CATEGORIES, LETTERS
from longvila_r1.data.synth.summary import SynthSummary
from longvila_r1.data.synth.templates import TEMPLATES

__all__ = [
    "CATEGORIES",
    "LETTERS",
    "TEMPLATES",
    "SynthSummary",
    "answer_text_baseline",
    "determinable_fraction",
    "evidence_coverage",
    "generate_dataset",
    "iter_corpus_text",
    "longest_option_rate",
    "question_only_baseline",
    "render_video",
    "synth_settings",
    "video_records",
]
