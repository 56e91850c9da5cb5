"""Frame-scaling sweep: one model evaluated at several frame counts, written as a table and a plot.

The paper's frame-scaling figure (accuracy rising with input frames, 16 -> 512) comes from this: the same model
and questions, only ``num_frames`` changes. Run it as::

    python -m longvila_r1.evaluation.sweep --model-path outputs/sft/hf --data-dir outputs/demo/data \\
        --frames 8 16 32 64 128 256 --output-dir evaluation/frame_sweep

It writes ``frame_sweep.md`` (accuracy overall and per category, format rate, seconds per sample),
``frame_sweep.json`` and ``frame_sweep.png`` (accuracy vs frames, log-2 axis).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SWEEP_NAME = "frame_sweep"


@dataclass
class SweepPoint:
    """The evaluation of one frame count: ``metrics`` holds every ``val/...`` value logged by the module."""

    num_frames: int
    num_samples: int
    seconds_per_sample: float
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def acc(self) -> float:
        return self.metrics["val/acc"]


def frame_sweep(
    model_path: str,
    data_dir: str,
    frames: Sequence[int] = (8, 16, 32, 64, 128, 256),
    output_dir: str | Path = f"outputs/eval/{SWEEP_NAME}",
    *,
    family: str | None = None,
    eval_max_new_tokens: int = 256,
    eval_batch_size: int = 8,
    data_kwargs: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> list[SweepPoint]:
    """Evaluate ``model_path`` on the eval split of ``data_dir`` at each frame count; write table, JSON and plot.

    The model is built once and validated with one :class:`~lightning.pytorch.Trainer` run per frame count, on a
    :class:`~longvila_r1.evaluation.BenchmarkDataModule` that differs only in ``num_frames``.

    Args:
        model_path: ``"tiny"``/``"small"`` or a local Hugging Face model directory (``longvila-r1 export`` output).
        data_dir: directory of the benchmark file (``eval.jsonl`` by default) and its videos.
        frames: frame counts, each >= 1, evaluated in increasing order.
        output_dir: where ``frame_sweep.md``, ``.json`` and ``.png`` go.
        family: architecture of a preset model.
        eval_max_new_tokens: generation budget per answer (long enough for the reasoning).
        eval_batch_size: questions per generation batch.
        data_kwargs: more :class:`~longvila_r1.evaluation.BenchmarkDataModule` arguments (``benchmark``,
            ``eval_file``, ``max_eval_samples``, ``subtitle_dir``, ...).
        trainer_kwargs: more Trainer arguments (``accelerator``, ``precision``, ``callbacks``, ...).

    Returns:
        One :class:`SweepPoint` per frame count.

    Example:
        >>> points = frame_sweep("outputs/sft/hf", "outputs/demo/data", frames=(8, 16, 32))  # doctest: +SKIP
        >>> [(p.num_frames, round(p.acc, 3)) for p in points]  # doctest: +SKIP
        [(8, 0.412), (16, 0.455), (32, 0.503)]
    """
    counts = sorted(set(frames))
    if not counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
        raise ValueError(f"frames must be a non-empty sequence of integers >= 1, got {frames!r}")
    import lightning.pytorch as pl

    from longvila_r1.evaluation.datamodule import BenchmarkDataModule
    from longvila_r1.modules.policy_module import VideoPolicyModule

    module = VideoPolicyModule(path=model_path, family=family, eval_max_new_tokens=eval_max_new_tokens)
    trainer_args = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False, "devices": 1}
    trainer_args.update(trainer_kwargs or {})
    points = []
    for count in counts:
        data = BenchmarkDataModule(
            data_dir=data_dir,
            model_path=model_path,
            model_family=family,
            num_frames=count,
            eval_batch_size=eval_batch_size,
            **(data_kwargs or {}),
        )
        start = time.perf_counter()
        metrics = pl.Trainer(**trainer_args).validate(module, datamodule=data, verbose=False)[0]
        elapsed = time.perf_counter() - start
        # Counted after the run: samples whose video could not be read (on_error="skip") were not scored.
        samples = len(data.eval_set) - data.skipped["samples"]
        values = {key: float(value) for key, value in metrics.items()}
        points.append(SweepPoint(count, samples, elapsed / max(samples, 1), values))
    meta = {"model": model_path, "data_dir": data_dir, "max_new_tokens": eval_max_new_tokens, **dict(data_kwargs or {})}
    write_sweep(points, output_dir, meta)
    return points


def write_sweep(points: Sequence[SweepPoint], output_dir: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``frame_sweep.md``, ``frame_sweep.json`` and ``frame_sweep.png`` into ``output_dir``; returns it."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    document = {"meta": dict(meta), "points": [asdict(point) for point in points]}
    (output_dir / f"{SWEEP_NAME}.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    (output_dir / f"{SWEEP_NAME}.md").write_text(format_sweep_table(points, meta), encoding="utf-8")
    plot_sweep(points, output_dir / f"{SWEEP_NAME}.png", title=str(meta.get("model", "")))
    return output_dir


def format_sweep_table(points: Sequence[SweepPoint], meta: Mapping[str, Any]) -> str:
    """Markdown: one row per frame count; accuracy overall and per category (%), format rate, time per sample.

    Example:
        >>> point = SweepPoint(8, 4, 0.5, {"val/acc": 0.5, "val/format_rate": 1.0, "val/acc/temporal": 0.25})
        >>> print(format_sweep_table([point], {}))
        # Frame-scaling sweep
        <BLANKLINE>
        | frames | n | accuracy (%) | temporal | format rate (%) | s / sample |
        |---:|---:|---:|---:|---:|---:|
        | 8 | 4 | 50.0 | 25.0 | 100.0 | 0.500 |
        <BLANKLINE>
    """
    groups = sorted({key for point in points for key in point.metrics if key.startswith("val/acc/")})
    header = ["frames", "n", "accuracy (%)", *(key.removeprefix("val/acc/") for key in groups)]
    header += ["format rate (%)", "s / sample"]
    lines = ["# Frame-scaling sweep", ""]
    if meta:
        lines += [*(f"- {key}: {value}" for key, value in meta.items()), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for point in points:
        cells = [str(point.num_frames), str(point.num_samples), _percent(point.metrics.get("val/acc"))]
        cells += [_percent(point.metrics.get(key)) for key in groups]
        cells += [_percent(point.metrics.get("val/format_rate")), f"{point.seconds_per_sample:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def headless_pyplot():
    """``matplotlib.pyplot`` on the Agg backend: training machines have no display."""
    import matplotlib

    matplotlib.use("Agg")  # must precede pyplot's first import
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(points: Sequence[SweepPoint], path: str | Path, title: str = "") -> Path:
    """Accuracy (%) vs frames on a log-2 axis, overall in bold and per category thin, saved as a PNG."""
    plt = headless_pyplot()
    frames = [point.num_frames for point in points]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    groups = sorted({key for point in points for key in point.metrics if key.startswith("val/acc/")})
    for key in groups:
        values = [100 * point.metrics.get(key, float("nan")) for point in points]
        ax.plot(frames, values, marker=".", linewidth=1, alpha=0.6, label=key.removeprefix("val/acc/"))
    overall = [100 * point.acc for point in points]
    ax.plot(frames, overall, marker="o", linewidth=2.5, color="black", label="overall")
    for x, y in zip(frames, overall, strict=True):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(frames, [str(n) for n in frames])
    ax.set(xlabel="input frames", ylabel="accuracy (%)", title=title or "accuracy vs input frames")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m longvila_r1.evaluation.sweep --model-path DIR --data-dir DIR --frames 8 16 32 ...``."""
    parser = argparse.ArgumentParser(prog="longvila-r1 sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True, help="'tiny', 'small' or a Hugging Face model directory")
    parser.add_argument("--data-dir", required=True, help="directory of the benchmark file and its videos")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256], help="frame counts")
    parser.add_argument("--output-dir", default=f"outputs/eval/{SWEEP_NAME}", help="where the table and plot go")
    parser.add_argument("--benchmark", default="longvideo_reason", choices=("longvideo_reason", "videomme"))
    parser.add_argument("--eval-file", default="eval.jsonl", help="benchmark file under --data-dir")
    parser.add_argument("--video-dir", default=None, help="video directory (default: the benchmark file's)")
    parser.add_argument("--subtitle-dir", default=None, help="VideoMME .srt directory: the with-subtitles setting")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate the first N questions only")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="generation budget per answer")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per generation batch")
    parser.add_argument("--family", default=None, help="architecture of a preset model")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    args = parser.parse_args(argv)
    data_kwargs = {"benchmark": args.benchmark, "eval_file": args.eval_file, "max_eval_samples": args.max_samples}
    data_kwargs.update({"video_dir": args.video_dir, "subtitle_dir": args.subtitle_dir})
    points = frame_sweep(
        args.model_path,
        args.data_dir,
        args.frames,
        args.output_dir,
        family=args.family,
        eval_max_new_tokens=args.max_new_tokens,
        eval_batch_size=args.batch_size,
        data_kwargs=data_kwargs,
        trainer_kwargs={"accelerator": args.accelerator},
    )
    print((Path(args.output_dir) / f"{SWEEP_NAME}.md").read_text(), end="")
    print(f"plot: {Path(args.output_dir) / f'{SWEEP_NAME}.png'} ({len(points)} frame counts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
