"""The results of an evaluation on disk: every response in ``results.json``, tables in ``results.md``, resumable.

A sample is one JSON object: ``id``, ``video``, ``category``, ``duration`` (seconds or a benchmark's label),
``answer``, ``options``, ``response``, ``extracted``, ``correct``, ``well_formatted`` and the record's breakdown
fields that exist (VideoMME's ``task_type``, ``domain``, ``sub_category``). With sampled answers (the module's
``eval_samples``), ``sampled_answers`` holds the letter extracted from each of them (``null``: none), and the
summary gets their mean accuracy, ``pass@k`` and ``maj@k``. While an evaluation runs, each rank
appends its samples to ``results.rank<r>.partial.jsonl``, so a run that dies still leaves its finished samples;
:meth:`EvalResults.write` merges those, the previous ``results.json`` and the new samples, then removes the
partial files. Answers are scored by :func:`~longvila_r1.evaluation.extract_answer` exactly as the metrics do.

Example:
    >>> results = EvalResults("outputs/eval/longvideo_reason")  # doctest: +SKIP
    >>> sample = results.score(record, "<think>...</think><answer>B</answer>")  # doctest: +SKIP
    >>> results.write([sample], {"model": "outputs/sft/hf"})  # doctest: +SKIP
    >>> results.finished_ids()  # doctest: +SKIP
    {'synth-easy-s7-v00011-q0'}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from longvila_r1.data.records import VideoQARecord
from longvila_r1.evaluation.answer import extract_answer, is_well_formatted
from longvila_r1.evaluation.metrics import DurationBuckets
from longvila_r1.evaluation.sampled_metrics import score_sampled_letters
from longvila_r1.evaluation.videomme import DURATION_LABEL

RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
PARTIAL_GLOB = "results.rank*.partial.jsonl"
DEFAULT_GROUP_BY = ("task_type", "domain", "sub_category")


class EvalResults:
    """Reads, scores, merges and writes the per-sample results of one evaluation directory.

    Args:
        output_dir: the directory of ``results.json``, ``results.md`` and the partial files.
        group_by: record ``extra`` fields that get their own accuracy table (besides category and duration).
        duration_buckets: buckets of the duration table, see :class:`~longvila_r1.evaluation.metrics.DurationBuckets`.
    """

    def __init__(
        self,
        output_dir: str | Path,
        group_by: Sequence[str] = DEFAULT_GROUP_BY,
        duration_buckets: Mapping[str, float | None] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.group_by = tuple(group_by)
        self.buckets = DurationBuckets(duration_buckets)

    @property
    def json_path(self) -> Path:
        return self.output_dir / RESULTS_JSON

    def score(
        self, record: VideoQARecord, response: str, sampled_responses: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One result sample: the record's identity and ground truth, the response and its scoring.

        ``sampled_responses`` (sampled answers to the same prompt) are kept as their extracted letters.
        """
        extracted = extract_answer(response, record.options)
        sample = {
            "id": record.id,
            "video": record.videos,
            "category": record.category,
            "duration": record.extra.get(DURATION_LABEL, record.duration),
            "answer": record.answer,
            "options": list(record.options) if record.options else None,
            "response": response,
            "extracted": extracted,
            "correct": extracted == record.answer,
            "well_formatted": is_well_formatted(response),
        }
        sample.update({name: record.extra[name] for name in self.group_by if name in record.extra})
        if sampled_responses is not None:
            sample["sampled_answers"] = [extract_answer(text, record.options) for text in sampled_responses]
        return sample

    def load(self) -> dict[str, dict[str, Any]]:
        """Samples already written, by id: ``results.json`` first, then the partial files of unfinished runs."""
        samples: dict[str, dict[str, Any]] = {}
        if self.json_path.is_file():
            for sample in json.loads(self.json_path.read_text(encoding="utf-8"))["samples"]:
                samples[sample["id"]] = sample
        for partial in sorted(self.output_dir.glob(PARTIAL_GLOB)):
            for line in partial.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    sample = json.loads(line)
                    samples.setdefault(sample["id"], sample)
        return samples

    def finished_ids(self) -> set[str]:
        """Ids of the samples a rerun can skip."""
        return set(self.load())

    def append_partial(self, rank: int, samples: Iterable[dict[str, Any]]) -> None:
        """Append samples to this rank's partial file (flushed, so they survive a crash of the run)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / f"results.rank{rank}.partial.jsonl").open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples)

    def write(
        self, samples: Iterable[dict[str, Any]], meta: Mapping[str, Any] | None = None, merge: bool = True
    ) -> dict[str, Any]:
        """Write ``results.json`` and ``results.md`` and remove the partial files; returns the summary.

        Args:
            samples: the new samples; one seen on several ranks (sequence parallelism) counts once.
            meta: the run's settings, written at the top of both files.
            merge: keep the samples already written (a resumed run); ``False`` replaces them.
        """
        merged = self.load() if merge else {}
        for sample in samples:
            merged[sample["id"]] = sample
        ordered = sorted(merged.values(), key=lambda sample: str(sample["id"]))
        summary = self.summarize(ordered)
        document = {"meta": dict(meta or {}), "summary": summary, "samples": ordered}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.json_path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        _atomic_write(self.output_dir / RESULTS_MD, format_markdown(summary, meta or {}))
        for partial in self.output_dir.glob(PARTIAL_GLOB):
            partial.unlink()
        return summary

    def summarize(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Accuracy overall and per category, duration bucket and ``group_by`` field; format rate; counts; and,
        when samples have sampled answers, ``sampled`` (see :func:`summarize_sampled`)."""
        groups: dict[str, dict[str, list[bool]]] = {}
        for sample in samples:
            keys = {"category": sample.get("category"), "duration": self.buckets.name(sample.get("duration"))}
            keys.update({name: sample.get(name) for name in self.group_by})
            for group, value in keys.items():
                if value is not None:
                    groups.setdefault(group, {}).setdefault(str(value), []).append(bool(sample["correct"]))
        summary = {
            "num_samples": len(samples),
            "acc": _mean(sample["correct"] for sample in samples),
            "format_rate": _mean(sample["well_formatted"] for sample in samples),
            "groups": {
                group: {value: {"n": len(flags), "acc": _mean(flags)} for value, flags in sorted(values.items())}
                for group, values in groups.items()
            },
        }
        sampled = summarize_sampled(samples)
        if sampled is not None:
            summary["sampled"] = sampled
        return summary


def summarize_sampled(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Scores of the sampled answers of the samples that have them; ``None`` when none has.

    Keys: ``n`` (questions), ``k`` (samples per question; a list when merged runs used different ``k``),
    ``sample_acc``, ``pass_at_k`` and ``maj_at_k``, as :class:`~longvila_r1.evaluation.SampledAnswerMetrics`
    computes them.

    Example:
        >>> summarize_sampled([{"answer": "A", "sampled_answers": ["A", "B"]},
        ...                    {"answer": "C", "sampled_answers": ["D", None]}])
        {'n': 2, 'k': 2, 'sample_acc': 0.25, 'pass_at_k': 0.5, 'maj_at_k': 0.5}
    """
    with_samples = [sample for sample in samples if sample.get("sampled_answers")]
    if not with_samples:
        return None
    scores = [score_sampled_letters(sample["sampled_answers"], sample["answer"]) for sample in with_samples]
    ks = sorted({len(sample["sampled_answers"]) for sample in with_samples})
    draws = sum(len(sample["sampled_answers"]) for sample in with_samples)
    return {
        "n": len(with_samples),
        "k": ks[0] if len(ks) == 1 else ks,
        "sample_acc": sum(score.hits for score in scores) / draws,
        "pass_at_k": _mean(score.passed for score in scores),
        "maj_at_k": _mean(score.majority_correct for score in scores),
    }


def format_markdown(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The summary as markdown: the run's settings, then one accuracy table (overall, then each group).

    Example:
        >>> print(format_markdown({"num_samples": 2, "acc": 0.5, "format_rate": 1.0, "groups": {}}, {"frames": 8}))
        # Evaluation results
        <BLANKLINE>
        - frames: 8
        <BLANKLINE>
        | group | value | n | accuracy (%) |
        |---|---|---:|---:|
        | overall | | 2 | 50.0 |
        | format rate | | 2 | 100.0 |
        <BLANKLINE>
    """
    lines = ["# Evaluation results", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += ["", "| group | value | n | accuracy (%) |", "|---|---|---:|---:|"]
    n = summary["num_samples"]
    lines.append(f"| overall | | {n} | {100 * summary['acc']:.1f} |")
    for group, values in summary["groups"].items():
        lines += [f"| {group} | {value} | {row['n']} | {100 * row['acc']:.1f} |" for value, row in values.items()]
    lines.append(f"| format rate | | {n} | {100 * summary['format_rate']:.1f} |")
    sampled = summary.get("sampled")
    if sampled:
        k, count = sampled["k"], sampled["n"]
        rows = (("sample accuracy", "sample_acc"), (f"pass@{k}", "pass_at_k"), (f"maj@{k}", "maj_at_k"))
        lines += [f"| sampled answers | {label} | {count} | {100 * sampled[key]:.1f} |" for label, key in rows]
    return "\n".join(lines) + "\n"


def _mean(flags: Iterable[bool]) -> float:
    values = [bool(flag) for flag in flags]
    return sum(values) / len(values) if values else 0.0


def _atomic_write(path: Path, text: str) -> None:
    # A run killed mid-write must not leave a truncated results.json that the next resume cannot read.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
