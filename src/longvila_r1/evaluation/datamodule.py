"""The data module of ``longvila-r1 validate`` on a benchmark: LongVideo-Reason-eval or VideoMME, with subtitles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from typing_extensions import override

from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.data.records import VideoQARecord
from longvila_r1.evaluation.benchmarks import BENCHMARKS, load_benchmark, with_ids
from longvila_r1.evaluation.subtitles import add_subtitles
from longvila_r1.evaluation.videomme import DEFAULT_VIDEO_PATTERN

log = logging.getLogger(__name__)


class BenchmarkDataModule(LongVideoReasonDataModule):
    """:class:`~longvila_r1.data.LongVideoReasonDataModule` whose eval split is a benchmark file.

    Every question gets an id (its own, else ``<file stem>-<position>``) so results name each sample and a rerun
    can skip finished ones (:class:`~longvila_r1.callbacks.EvalResultsWriter` with ``resume=True``). With
    ``subtitle_dir`` the with-subtitles setting is on: the subtitle lines on screen at the sampled frames' times
    are put before each question (see :mod:`longvila_r1.evaluation.subtitles`).

    Args:
        benchmark: ``"longvideo_reason"`` (LongVideo-Reason-eval records) or ``"videomme"`` (VideoMME rows).
        video_dir: directory the eval videos are relative to (default: the eval file's directory).
        video_pattern: VideoMME: video path of a row relative to ``video_dir`` (``"{videoID}.mp4"``).
        subtitle_dir: directory of ``.srt`` subtitles; ``None`` evaluates without subtitles.
        subtitle_pattern: subtitle file of a question relative to ``subtitle_dir``, over the record's extra
            fields, ``id`` and ``video_stem``.
        subtitle_window_s: half-width of each sampled frame's time span when picking subtitle lines.
        **kwargs: :class:`~longvila_r1.data.LongVideoReasonDataModule` arguments (``data_dir``, ``eval_file``,
            ``num_frames``, ``eval_batch_size``, ``max_eval_samples``, ...).

    Example:
        .. code-block:: yaml

            data:
              class_path: longvila_r1.evaluation.BenchmarkDataModule
              init_args:
                benchmark: videomme
                data_dir: /data/videomme
                eval_file: videomme/test-00000-of-00001.parquet
                video_dir: /data/videomme/data
                subtitle_dir: /data/videomme/subtitle
                num_frames: 64
    """

    def __init__(
        self,
        benchmark: str = "longvideo_reason",
        video_dir: str | None = None,
        video_pattern: str = DEFAULT_VIDEO_PATTERN,
        subtitle_dir: str | None = None,
        subtitle_pattern: str = "{videoID}.srt",
        subtitle_window_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
        if subtitle_window_s < 0:
            raise ValueError(f"subtitle_window_s must be >= 0, got {subtitle_window_s}")
        if subtitle_dir is not None and not Path(subtitle_dir).is_dir():
            raise FileNotFoundError(f"subtitle_dir {subtitle_dir!r} is not a directory")
        super().__init__(**kwargs)

    @override
    def _load(self, name: str) -> list[VideoQARecord]:
        if name != self.hparams.eval_file:
            return super()._load(name)
        path = self.data_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; point data.data_dir and data.eval_file at the benchmark file")
        hp = self.hparams
        report = load_benchmark(hp.benchmark, path, hp.video_dir, video_pattern=hp.video_pattern, on_error=hp.on_error)
        self.skipped["records"] += report.num_skipped
        records = with_ids(report.records, path.stem)[: hp.max_eval_samples]
        if hp.subtitle_dir is not None:
            records = add_subtitles(
                records,
                hp.subtitle_dir,
                self.frames,
                subtitle_pattern=hp.subtitle_pattern,
                window_s=hp.subtitle_window_s,
            )
        return records
