"""Read and sample video frames: :func:`read_video` returns a :class:`VideoClip`.

Sampling works on frame *presentation times*, read from the file rather than derived from a nominal frame
rate, so variable-frame-rate videos sample correctly. Decoding goes through decord when it is installed and
PyAV otherwise (see :mod:`longvila_r1.data.video_backends`); both give bit-identical frames.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from longvila_r1.data.video_backends import VideoDecodeError, open_source

__all__ = [
    "BACKENDS",
    "SHORT_VIDEO_MODES",
    "VideoClip",
    "VideoDecodeError",
    "fps_indices",
    "read_video",
    "sampled_timestamps",
    "uniform_indices",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")
SHORT_VIDEO_MODES = ("repeat", "fewer")

# Slack when comparing timestamps with sampling times: decord reports float32 seconds (about 0.1 ms off after an
# hour), and 1 ms stays far below any real frame interval.
_TIME_EPS = 1e-3
_T = TypeVar("_T")


@dataclass
class VideoClip:
    """Frames sampled from one video file, with where and when each frame came from.

    Attributes:
        frames: RGB frames, ``uint8 [T, H, W, 3]``.
        timestamps: presentation time of each returned frame in seconds from the start of the video stream,
            ``float64 [T]`` (the first frame of a typical file is at 0).
        indices: source frame index of each returned frame (presentation order); repeats are possible.
        source_fps: average frame rate of the file, ``(N - 1) / (last timestamp - first timestamp)``.
        num_source_frames: ``N``, the frames the file really holds (a truncated file: those that decode).
        duration: ``N / source_fps`` seconds, i.e. the timestamp span plus one average frame interval.
        path: the file read.
        backend: the backend that decoded the frames, ``"decord"`` or ``"pyav"``.

    Example:
        >>> clip = read_video("clip.mp4", num_frames=16)  # doctest: +SKIP
        >>> clip.frames.shape, clip.timestamps[:2], clip.backend  # doctest: +SKIP
        (torch.Size([16, 360, 640, 3]), tensor([0.2500, 0.7500], dtype=torch.float64), 'decord')
    """

    frames: torch.Tensor
    timestamps: torch.Tensor
    indices: list[int]
    source_fps: float
    num_source_frames: int
    duration: float
    path: str
    backend: str


def read_video(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    backend: str = "auto",
    short_video: str = "repeat",
) -> VideoClip:
    """Decode frames of ``path``, sampled by count, by rate, or all of them.

    Sampling:
        - ``num_frames``: uniform over the whole video. The ``N`` source frames are cut into ``num_frames``
          equal segments and the frame at the centre of each is taken (``floor((k + 0.5) * N / num_frames)``),
          the usual TSN / Video-LLM convention. Uniform in frame count, which for a variable-frame-rate file is
          not uniform in time: use ``fps`` for that.
        - ``fps``: one frame every ``1 / fps`` seconds of presentation time, starting at the first frame; each
          sampling time takes the frame on screen at that time (the last frame whose timestamp is at or
          before it), so variable-frame-rate files are sampled by real time. A frame is never returned twice:
          asking for more than the source rate returns each frame once.
        - neither: every frame.
        - ``max_frames`` caps every mode. When the cap bites, ``max_frames`` frames are sampled uniformly over
          the whole video instead (as with ``num_frames=max_frames``), so a long video is covered end to end
          rather than cut after its first ``max_frames / fps`` seconds.

    Videos with fewer than ``num_frames`` frames: ``short_video="repeat"`` (default) still returns exactly
    ``num_frames`` frames, with uniform repeats so every source frame appears, in order (for example 3
    frames, ``num_frames=5`` -> indices ``[0, 0, 1, 2, 2]``); ``"fewer"`` returns every frame once.

    Damaged files raise :class:`VideoDecodeError` (missing, empty, not a video, no video stream, an mp4 cut
    before its index, a requested frame that fails to decode). A file cut short after a readable header (a
    truncated webm/mkv, a streamed "faststart" mp4) is read as the video it still holds: ``num_source_frames``
    and ``duration`` describe the frames whose packets are complete, and only really decoded frames are
    returned, never concealment garbage for a packet cut by the end of the file (one exception, decord on an
    avi cut inside a frame: see :mod:`longvila_r1.data.video_backends`).

    Args:
        path: video file (any container and codec FFmpeg reads: mp4, webm, mkv, avi, ...).
        num_frames: number of frames to sample uniformly; exclusive with ``fps``.
        fps: sampling rate in frames per second of presentation time; exclusive with ``num_frames``.
        max_frames: upper bound on the number of frames returned, whatever the mode.
        backend: ``"decord"``, ``"pyav"``, or ``"auto"``: decord, falling back to PyAV when decord is not
            installed or fails on the file (if PyAV fails too, the error names both reasons).
        short_video: ``"repeat"`` or ``"fewer"``, see above.

    Returns:
        The sampled :class:`VideoClip`.

    Raises:
        VideoDecodeError: the file cannot be read; the message names the file and the reason.
        ValueError: invalid arguments.
        ImportError: ``backend="decord"`` without decord installed.

    Example:
        >>> clip = read_video("clip.mp4", fps=2.0, max_frames=64)  # doctest: +SKIP
        >>> clip.frames.shape  # [T, H, W, 3]  # doctest: +SKIP
        torch.Size([20, 360, 640, 3])
    """
    path, sampling = _prepare(path, num_frames, fps, max_frames, backend, short_video)
    return _with_backend(path, backend, lambda chosen: _read(path, chosen, sampling))


def sampled_timestamps(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    backend: str = "auto",
    short_video: str = "repeat",
) -> np.ndarray:
    """Presentation times in seconds (``float64 [T]``) of the frames :func:`read_video` samples with the same
    arguments, without decoding any: only the file's frame index is read.

    Used to pick what goes with the sampled frames (the subtitles on screen at their times) before decoding.

    Example:
        >>> sampled_timestamps("clip.mp4", num_frames=4)  # doctest: +SKIP
        array([ 1.25,  3.75,  6.25,  8.75])
    """
    path, sampling = _prepare(path, num_frames, fps, max_frames, backend, short_video)

    def times(chosen: str) -> np.ndarray:
        with open_source(path, chosen) as source:
            if len(source.timestamps) == 0:
                raise VideoDecodeError.for_file(path, "its video stream has no frames")
            return source.timestamps[sampling.indices(source.timestamps)]

    return _with_backend(path, backend, times)


def _prepare(path, num_frames, fps, max_frames, backend, short_video) -> tuple[Path, _Sampling]:
    """Validated arguments: the file, checked to exist and be non-empty, and the sampling rule."""
    _validate(num_frames, fps, max_frames, backend, short_video)
    path = Path(path)
    _check_file(path)
    return path, _Sampling(num_frames, fps, max_frames, short_video)


def _with_backend(path: Path, backend: str, job: Callable[[str], _T]) -> _T:
    """``job(backend)``; for ``"auto"``, decord first and PyAV when decord is missing or fails on the file."""
    if backend != "auto":
        return job(backend)
    try:
        return job("decord")
    except ImportError:
        decord_failure = "decord is not installed"
    except VideoDecodeError as exc:
        decord_failure = exc.reason
    log.debug("Reading %s with PyAV: %s", path, decord_failure)
    try:
        return job("pyav")
    except VideoDecodeError as exc:
        raise VideoDecodeError.for_file(path, f"decord: {decord_failure}; PyAV: {exc.reason}") from exc


def uniform_indices(num_source_frames: int, num_frames: int, short_video: str = "repeat") -> list[int]:
    """Centre of each of ``num_frames`` equal segments of ``range(num_source_frames)`` (see :func:`read_video`)."""
    if num_frames >= num_source_frames and short_video == "fewer":
        return list(range(num_source_frames))
    # Integer arithmetic: floor((k + 0.5) * N / n) without float round-off.
    return [(2 * k + 1) * num_source_frames // (2 * num_frames) for k in range(num_frames)]


def fps_indices(timestamps: np.ndarray, fps: float) -> list[int]:
    """Frames on screen every ``1 / fps`` seconds from the first frame, each at most once (see :func:`read_video`).

    Sampling times cover the whole duration, the last frame's display interval included (one average interval,
    as in ``VideoClip.duration``).
    """
    count = len(timestamps)
    duration = float(timestamps[-1] - timestamps[0]) * count / (count - 1) if count > 1 else 0.0
    times = timestamps[0] + np.arange(max(math.ceil(duration * fps - _TIME_EPS), 1)) / fps
    on_screen = np.searchsorted(timestamps, times + _TIME_EPS, side="right") - 1
    return np.unique(on_screen).tolist()


@dataclass(frozen=True)
class _Sampling:
    num_frames: int | None
    fps: float | None
    max_frames: int | None
    short_video: str

    def indices(self, timestamps: np.ndarray) -> list[int]:
        count = len(timestamps)
        if self.num_frames is not None:
            wanted = min(self.num_frames, self.max_frames or self.num_frames)
            return uniform_indices(count, int(wanted), self.short_video)
        indices = fps_indices(timestamps, self.fps) if self.fps is not None else list(range(count))
        if self.max_frames is not None and len(indices) > self.max_frames:
            return uniform_indices(count, int(self.max_frames), self.short_video)
        return indices


def _read(path: Path, backend: str, sampling: _Sampling) -> VideoClip:
    with open_source(path, backend) as source:
        timestamps = source.timestamps  # [N]
        if len(timestamps) == 0:
            raise VideoDecodeError.for_file(path, "its video stream has no frames")
        indices = sampling.indices(timestamps)
        unique = sorted(set(indices))
        decoded = source.decode(unique)  # [U, H, W, 3]
        fps = _average_fps(timestamps, source.nominal_fps)
    # Each frame is decoded once; repeats (short videos) are expanded afterwards.
    if len(unique) < len(indices):
        decoded = decoded[np.searchsorted(unique, indices)]  # [T, H, W, 3]
    return VideoClip(
        frames=torch.from_numpy(decoded),
        timestamps=torch.from_numpy(timestamps[indices]),
        indices=indices,
        source_fps=fps,
        num_source_frames=len(timestamps),
        duration=len(timestamps) / fps if fps > 0 else 0.0,
        path=str(path),
        backend=backend,
    )


def _average_fps(timestamps: np.ndarray, nominal_fps: float) -> float:
    span = float(timestamps[-1] - timestamps[0])
    # A single frame has no interval to measure: fall back on the container's claim.
    return (len(timestamps) - 1) / span if span > 0 else nominal_fps


def _check_file(path: Path) -> None:
    # FFmpeg reports these as generic "invalid data"; say what is really wrong.
    if not path.exists():
        raise VideoDecodeError.for_file(path, "no such file")
    if not path.is_file():
        raise VideoDecodeError.for_file(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError.for_file(path, "empty file (0 bytes)")


def _validate(num_frames, fps, max_frames, backend, short_video) -> None:
    if num_frames is not None and fps is not None:
        raise ValueError(f"num_frames={num_frames} and fps={fps} are exclusive: sample by count or by rate")
    for name, value in (("num_frames", num_frames), ("max_frames", max_frames)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
    if fps is not None and not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0 or None, got {fps!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if short_video not in SHORT_VIDEO_MODES:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_MODES}, got {short_video!r}")
