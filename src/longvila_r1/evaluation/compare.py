"""Side-by-side accuracy of several evaluations of the same questions: the before/after table of a recipe.

``longvila-r1 compare outputs/eval/sft outputs/eval/grpo --names SFT GRPO`` reads each directory's
``results.json`` (written by :class:`~longvila_r1.callbacks.EvalResultsWriter`) and prints one markdown table:
overall accuracy, each category, format rate, the sampled-answer figures (sample accuracy, pass@k, maj@k) of
evaluations that sampled answers, and the change from the first column to the last. Evaluations
of different question sets are refused, since their accuracies are not comparable.

Example:
    >>> table = compare_results(["outputs/eval/sft", "outputs/eval/grpo"], names=["SFT", "GRPO"])  # doctest: +SKIP
    >>> print(table)  # doctest: +SKIP
    | metric | SFT | GRPO | change |
    ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longvila_r1.evaluation.results import EvalResults


def compare_results(dirs: Sequence[str | Path], names: Sequence[str] | None = None) -> str:
    """The markdown table comparing the evaluations in ``dirs`` (the change is last minus first, in points).

    Raises:
        FileNotFoundError: a directory has no ``results.json``.
        ValueError: fewer than two directories, names that do not match them, or different question sets.
    """
    if len(dirs) < 2:
        raise ValueError(f"compare needs at least two evaluation directories, got {len(dirs)}")
    names = list(names) if names else [Path(d).name for d in dirs]
    if len(names) != len(dirs):
        raise ValueError(f"{len(names)} names for {len(dirs)} directories")
    runs = []
    for directory in dirs:
        results = EvalResults(directory)
        if not results.json_path.is_file():
            raise FileNotFoundError(f"{results.json_path} not found: run `longvila-r1 validate` with EvalResultsWriter")
        samples = list(results.load().values())
        runs.append((results.summarize(samples), {sample["id"] for sample in samples}))
    for (_, ids), directory in zip(runs[1:], dirs[1:], strict=True):
        if ids != runs[0][1]:
            raise ValueError(f"{directory} evaluated other questions than {dirs[0]}; accuracies are not comparable")
    rows = [("accuracy", [summary["acc"] for summary, _ in runs])]
    categories = sorted({c for summary, _ in runs for c in summary["groups"].get("category", {})})
    rows += [(f"accuracy / {c}", [_group_acc(summary, "category", c) for summary, _ in runs]) for c in categories]
    rows.append(("format rate", [summary["format_rate"] for summary, _ in runs]))
    if any("sampled" in summary for summary, _ in runs):
        rows += [(label, [_sampled(summary, key) for summary, _ in runs]) for label, key in SAMPLED_ROWS]
    lines = [
        f"{len(runs[0][1])} questions",
        "",
        "| metric | " + " | ".join(names) + " | change |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for metric, values in rows:
        cells = " | ".join("-" if v is None else f"{100 * v:.1f}" for v in values)
        change = "-" if None in (values[0], values[-1]) else f"{100 * (values[-1] - values[0]):+.1f}"
        lines.append(f"| {metric} | {cells} | {change} |")
    return "\n".join(lines) + "\n"


SAMPLED_ROWS = (("sampled answers / accuracy", "sample_acc"), ("pass@k", "pass_at_k"), ("maj@k", "maj_at_k"))


def _sampled(summary: dict[str, Any], key: str) -> float | None:
    sampled = summary.get("sampled")
    return None if sampled is None else sampled[key]


def _group_acc(summary: dict[str, Any], group: str, value: str) -> float | None:
    row = summary["groups"].get(group, {}).get(value)
    return None if row is None else row["acc"]


def main(argv: Sequence[str]) -> int:
    """``longvila-r1 compare DIR DIR [...] [--names ...]``."""
    parser = argparse.ArgumentParser(prog="longvila-r1 compare", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="evaluation directories holding results.json")
    parser.add_argument("--names", nargs="+", help="column names (default: the directory names)")
    args = parser.parse_args(list(argv))
    try:
        print(compare_results(args.dirs, args.names), end="")
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"longvila-r1 compare: error: {exc}\n")
    return 0
