"""Write frame arrays to real video files with PyAV (used by the synthetic generator and the tests)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# Container suffix -> (codec, pixel format). H.264 and VP9 need even sizes in yuv420p, so odd sizes switch to
# yuv444p (see ``_pixel_format``); mpeg4/avi is kept for container coverage.
CODECS_BY_SUFFIX: dict[str, tuple[str, str]] = {
    ".mp4": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 8.0,
    codec: str | None = None,
    pixel_format: str | None = None,
    timestamps: list[float] | None = None,
    crf: int = 18,
    encoder_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]`` RGB) into ``path``; the container follows the suffix.

    Args:
        path: output file; ``.mp4`` (H.264), ``.webm`` (VP9), ``.mkv`` (H.264) or ``.avi`` (MPEG-4 part 2).
        frames: RGB frames, uint8.
        fps: nominal frame rate (the stream time base is ``1/fps`` unless ``timestamps`` is given).
        codec / pixel_format: override the defaults for the suffix.
        timestamps: optional presentation time of each frame in seconds, for variable-frame-rate files.
        crf: quality for libx264 (lower is better); small synthetic frames stay sharp at 18.
        encoder_options: FFmpeg encoder options merged over the defaults, e.g.
            ``{"x264-params": "keyint=8:bframes=2"}`` for short GOPs with B-frames.
        container_options: FFmpeg muxer options, e.g. ``{"movflags": "faststart"}`` for an mp4 with its index
            (moov atom) first, as streamed files have.

    Example:
        >>> write_video("clip.mp4", np.zeros((16, 64, 64, 3), np.uint8), fps=8)  # doctest: +SKIP
    """
    path = Path(path)
    # No whole-array copy: a strided view (e.g. a long synthetic video) stays a view; frames are copied one by one.
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {tuple(frames.shape)}")
    if timestamps is not None and len(timestamps) != len(frames):
        raise ValueError(f"timestamps has {len(timestamps)} entries for {len(frames)} frames")
    default_codec, default_format = CODECS_BY_SUFFIX.get(path.suffix.lower(), ("libx264", "yuv420p"))
    codec = codec or default_codec
    pixel_format = pixel_format or _pixel_format(codec, default_format, frames.shape[1:3])
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = _add_stream(container, codec, pixel_format, frames, fps, timestamps, crf)
        stream.options = {**stream.options, **(encoder_options or {})}
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = _pts(index, fps, timestamps, stream.codec_context.time_base)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _add_stream(container, codec, pixel_format, frames, fps, timestamps, crf):
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1000)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = pixel_format
    # Variable frame rate needs a fine time base so uneven timestamps survive the round trip.
    stream.codec_context.time_base = Fraction(1, 1000) if timestamps is not None else 1 / rate
    if codec == "libx264":
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
    elif codec == "libvpx-vp9":
        stream.options = {"crf": "20", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
    elif codec == "mpeg4":
        # The default rate control blurs flat frames by several grey levels; cap the quantiser instead.
        stream.options = {"qmin": "1", "qmax": "2"}
    return stream


def _pixel_format(codec: str, default_format: str, size: tuple[int, int]) -> str:
    # 4:2:0 chroma needs even sizes for H.264 and VP9; 4:4:4 takes any size.
    odd = size[0] % 2 == 1 or size[1] % 2 == 1
    return "yuv444p" if odd and codec in ("libx264", "libvpx-vp9") and default_format == "yuv420p" else default_format


def _pts(index: int, fps: float, timestamps: list[float] | None, time_base) -> int:
    if timestamps is None:
        return index
    return round(timestamps[index] / float(time_base))
