"""Training curves from TensorBoard logs: a PNG with one panel per scalar and a markdown summary table.

``longvila-r1 curves outputs/grpo/version_0 --tags rollout/reward val/acc --output outputs/grpo/curves.png``
reads the event files of one or more runs (a ``version_N`` directory, or a logger directory whose newest
``version_N`` is taken), plots each requested scalar against the step (raw values faint, a moving average on
top) and prints, per run and scalar, the number of points, the first and last values and the best one.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from longvila_r1.evaluation.sweep import headless_pyplot

EVENT_GLOB = "events.out.tfevents.*"


@dataclass(frozen=True)
class RunScalars:
    """The scalar series of one TensorBoard run: tag -> (steps, values), in logging order.

    Example:
        >>> run = RunScalars.load("outputs/grpo/version_0")  # doctest: +SKIP
        >>> steps, values = run.series("rollout/reward")  # doctest: +SKIP
    """

    name: str
    scalars: dict[str, tuple[list[int], list[float]]]

    @classmethod
    def load(cls, log_dir: str | Path, name: str | None = None) -> RunScalars:
        """Read every event file of ``log_dir`` (or of its newest ``version_N`` subdirectory)."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        run_dir = resolve_run_dir(Path(log_dir))
        scalars: dict[str, tuple[list[int], list[float]]] = {}
        for event_file in sorted(run_dir.glob(EVENT_GLOB)):  # a resumed run appends a second file
            accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
            accumulator.Reload()
            for tag in accumulator.Tags()["scalars"]:
                steps, values = scalars.setdefault(tag, ([], []))
                for event in accumulator.Scalars(tag):
                    steps.append(int(event.step))
                    values.append(float(event.value))
        return cls(name=name or str(run_dir), scalars=scalars)

    def series(self, tag: str) -> tuple[list[int], list[float]]:
        """Steps and values of ``tag``; a ``KeyError`` that lists the run's tags when it has none such."""
        if tag not in self.scalars:
            raise KeyError(f"{self.name} has no scalar {tag!r}; it has: {', '.join(sorted(self.scalars)) or 'none'}")
        return self.scalars[tag]


def resolve_run_dir(log_dir: Path) -> Path:
    """``log_dir`` itself if it holds event files, else its newest ``version_N`` subdirectory that does."""
    if not log_dir.is_dir():
        raise FileNotFoundError(f"no such log directory: {log_dir}")
    if any(log_dir.glob(EVENT_GLOB)):
        return log_dir
    versions = [d for d in log_dir.glob("version_*") if d.is_dir() and any(d.glob(EVENT_GLOB))]
    if not versions:
        raise FileNotFoundError(f"{log_dir} holds no TensorBoard event files ({EVENT_GLOB}) and no version_N run")
    return max(versions, key=_version_number)


def _version_number(run_dir: Path) -> int:
    suffix = run_dir.name.removeprefix("version_")
    return int(suffix) if suffix.isdigit() else -1


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each point (fewer at the start), so the curve starts at step one.

    Example:
        >>> moving_average([1.0, 2.0, 3.0, 4.0], 2)
        [1.0, 1.5, 2.5, 3.5]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def summary_table(runs: Sequence[RunScalars], tags: Sequence[str]) -> str:
    """Markdown: for each run and tag, points, first and last value, and the maximum with its step."""
    lines = ["| run | scalar | points | first | last | max (step) |", "|---|---|---:|---:|---:|---:|"]
    for run in runs:
        for tag in tags:
            steps, values = run.series(tag)
            if not values:
                continue
            best = max(range(len(values)), key=values.__getitem__)
            cells = [run.name, tag, str(len(values)), f"{values[0]:.4g}", f"{values[-1]:.4g}"]
            cells.append(f"{values[best]:.4g} ({steps[best]})")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: Sequence[RunScalars], tags: Sequence[str], path: str | Path, smooth: int = 1) -> Path:
    """One panel per tag, one line per run (raw values faint, their ``smooth``-point moving average solid)."""
    plt = headless_pyplot()
    fig, axes = plt.subplots(len(tags), 1, figsize=(7, 2.6 * len(tags)), dpi=110, squeeze=False)
    for ax, tag in zip(axes[:, 0], tags, strict=True):
        for index, run in enumerate(runs):
            steps, values = run.series(tag)
            color = f"C{index}"
            few = len(values) <= 20  # evaluations: a handful of points, drawn with markers and no smoothing
            if smooth > 1 and not few:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(steps, moving_average(values, smooth), color=color, linewidth=1.8, label=run.name)
            else:
                ax.plot(steps, values, color=color, marker="o" if few else None, linewidth=1.5, label=run.name)
        ax.set(title=tag, xlabel="step")
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``longvila-r1 curves RUN [RUN ...] --tags TAG [TAG ...] --output curves.png``."""
    parser = argparse.ArgumentParser(prog="longvila-r1 curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="TensorBoard run directories (or logger directories)")
    parser.add_argument("--tags", nargs="+", default=["rollout/reward", "val/acc"], help="scalars to plot")
    parser.add_argument("--output", type=Path, default=Path("curves.png"), help="PNG to write")
    parser.add_argument("--smooth", type=int, default=20, help="moving-average window over logged points")
    parser.add_argument("--names", nargs="+", help="legend names of the runs (default: their directories)")
    args = parser.parse_args(argv)
    if args.names is not None and len(args.names) != len(args.runs):
        parser.error(f"--names gives {len(args.names)} name(s) for {len(args.runs)} run(s)")
    names = args.names or [None] * len(args.runs)
    try:
        runs = [RunScalars.load(run, name) for run, name in zip(args.runs, names, strict=True)]
        print(summary_table(runs, args.tags), end="")
        path = plot_curves(runs, args.tags, args.output, smooth=args.smooth)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else exc
        parser.exit(2, f"longvila-r1 curves: error: {message}\n")
    print(f"wrote {path}")
    return 0
