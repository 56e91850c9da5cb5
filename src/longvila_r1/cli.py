"""The ``longvila-r1`` command.

Training jobs (``fit``, ``validate``, ``test``) go through LightningCLI; the data jobs (``data synth``,
``data summary``) and ``export`` are plain argparse subcommands of the same command.

Example:
    longvila-r1 data synth --output-dir outputs/demo/data --num-videos 200 --frames 128 --seed 0
    longvila-r1 fit --config configs/sft.yaml
    longvila-r1 validate --config configs/sft.yaml --ckpt_path outputs/sft/checkpoints/last.ckpt
    longvila-r1 export --ckpt outputs/sft/checkpoints/last.ckpt --output outputs/sft/hf
    longvila-r1 sweep --model-path outputs/sft/hf --data-dir outputs/demo/data --frames 8 16 32 64
    longvila-r1 compare outputs/eval/sft outputs/eval/grpo --names SFT GRPO
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _build_data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longvila-r1 data", description="Data jobs: synthetic set, summaries.")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic LongVideo-Reason set (mp4 videos + JSONL splits)")
    synth.add_argument("--output-dir", type=Path, required=True, help="directory to write videos/ and *.jsonl into")
    synth.add_argument("--num-videos", type=int, default=200, help="number of videos (default: 200)")
    synth.add_argument("--frames", type=int, default=128, help="frames per video (default: 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same set")
    synth.add_argument("--difficulty", choices=("easy", "hard"), default="easy", help="question difficulty")
    synth.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos (default: 8)")
    synth.add_argument("--size", type=int, default=64, help="frame height and width in pixels (default: 64)")
    synth.add_argument("--questions-per-video", type=int, default=4, help="questions per video (default: 4)")
    synth.add_argument("--workers", type=int, default=0, help="worker processes for rendering (default: 0)")

    summary = commands.add_parser("summary", help="print counts, frames and prompt lengths of a data directory")
    summary.add_argument("--data-dir", type=Path, required=True, help="directory holding train/val/eval.jsonl")
    summary.add_argument("--num-frames", type=int, default=16, help="frames sampled per video for the model")
    return parser


def data_main(argv: Sequence[str]) -> int:
    """Run a ``longvila-r1 data ...`` subcommand."""
    parser = _build_data_parser()
    args = parser.parse_args(list(argv))
    try:
        return _run_data_command(args)
    except (ValueError, FileNotFoundError) as exc:  # bad values get one clear line, not a traceback
        parser.exit(2, f"longvila-r1 data {args.command}: error: {exc}\n")


def _run_data_command(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from longvila_r1.data.synth import generate_dataset

        summary = generate_dataset(
            args.output_dir,
            num_videos=args.num_videos,
            frames=args.frames,
            seed=args.seed,
            difficulty=args.difficulty,
            fps=args.fps,
            size=args.size,
            questions_per_video=args.questions_per_video,
            workers=args.workers,
        )
        print(summary.format_table())
        return 0
    from longvila_r1.data.summary import summarize_data_dir

    print(summarize_data_dir(args.data_dir, num_frames=args.num_frames).format_table())
    return 0


def export_main(argv: Sequence[str]) -> int:
    """``longvila-r1 export --ckpt PATH --output DIR``: a Lightning checkpoint to a Hugging Face directory."""
    parser = argparse.ArgumentParser(prog="longvila-r1 export", description=export_main.__doc__)
    parser.add_argument("--ckpt", type=Path, required=True, help="Lightning checkpoint (.ckpt) written by fit")
    parser.add_argument("--output", type=Path, required=True, help="directory to write the model into")
    args = parser.parse_args(list(argv))
    from longvila_r1.modules.export import export_checkpoint

    try:
        output = export_checkpoint(args.ckpt, args.output)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.exit(2, f"longvila-r1 export: error: {exc}\n")
    print(f"exported {args.ckpt} to {output} (load it with `model.path: {output}`)")
    return 0


def sweep_main(argv: Sequence[str]) -> int:
    """``longvila-r1 sweep``: accuracy vs frames per video (markdown table + PNG plot)."""
    from longvila_r1.evaluation.sweep import main as sweep

    return sweep(list(argv))


def compare_main(argv: Sequence[str]) -> int:
    """``longvila-r1 compare DIR DIR``: a before/after accuracy table of evaluations of the same questions."""
    from longvila_r1.evaluation.compare import main as compare

    return compare(list(argv))


def curves_main(argv: Sequence[str]) -> int:
    """``longvila-r1 curves RUN [...]``: TensorBoard scalars of training runs as a PNG and a summary table."""
    from longvila_r1.evaluation.curves import main as curves

    return curves(list(argv))


def lightning_main(argv: Sequence[str]) -> int:
    """``fit`` / ``validate`` / ``test`` through :class:`~longvila_r1.lightning_cli.LongVilaCLI`."""
    from longvila_r1.lightning_cli import ConfigError, run_lightning_cli
    from longvila_r1.strategies.launcher import leave_process_group

    try:
        run_lightning_cli(list(argv))
    except ConfigError as exc:  # a value a constructor refused: one line naming the config section
        print(f"longvila-r1 {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    # Under torchrun each rank runs this script: leave the process group together before exiting, as the
    # spawn launcher's workers do (an undestroyed gloo group can abort a rank at exit).
    leave_process_group()
    return 0


COMMANDS = {
    "fit": lightning_main,
    "validate": lightning_main,
    "test": lightning_main,
    "data": data_main,
    "export": export_main,
    "sweep": sweep_main,
    "compare": compare_main,
    "curves": curves_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``longvila-r1`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = ", ".join(COMMANDS)
        message = f"usage: longvila-r1 {{{known}}} ..."
        if argv and argv[0] not in ("-h", "--help"):
            print(f"longvila-r1: unknown command {argv[0]!r} (choose from {known})", file=sys.stderr)
            print(message, file=sys.stderr)
            return 2
        print(message)
        return 0
    command = COMMANDS[argv[0]]
    return command(argv if command is lightning_main else argv[1:])


if __name__ == "__main__":
    sys.exit(main())
