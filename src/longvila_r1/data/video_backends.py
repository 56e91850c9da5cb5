"""Decoder backends behind :func:`longvila_r1.data.video.read_video`: decord and PyAV.

Each backend opens a file as a *source* with the same small interface:

- ``timestamps``: presentation time of every frame in seconds from the start of the video stream, ascending
  (``float64 [N]``); this is what sampling works on, so variable-frame-rate files sample correctly;
- ``nominal_fps``: the container's average frame rate, used only when the timestamps cannot give one;
- ``decode(indices)``: RGB frames (``uint8 [T, H, W, 3]``) for sorted, unique frame indices.

Both decode with FFmpeg and convert to RGB with swscale, so they return bit-identical frames for the same
indices (the tests check it on every container we write). ``decord`` and ``av`` are imported inside the
functions: the package must import on a machine without decord.

Damaged files, as measured with decord 0.6.0 and PyAV 18:

- decord raised a Python exception, never crashed or hung, on missing, empty, random-byte, text, audio-only
  and truncated files and on 40 files with 32 random bytes overwritten (mp4, faststart mp4, mkv, webm, avi).
  So files are not pre-checked with PyAV before decord opens them: that would cost a second open per read.
- A truncated matroska (webm/mkv) file reads as a shorter video with both backends: the demuxer stops at the
  last complete block. A faststart mp4 cut short makes decord fail (``"auto"`` then uses PyAV).
- An avi cut inside a frame is the one case where they differ: FFmpeg hands out the cut packet flagged
  corrupt; PyAV leaves it out, decord decodes it and returns that last frame partly concealed. Use
  ``backend="pyav"`` where truncated avi files are expected.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

# decord prefixes its messages with "[hh:mm:ss] /path/to/file.cc:123: " (nested errors repeat it) and may
# append a C++ stack trace.
_DECORD_NOISE = re.compile(r"^(\[[\d:]+\] \S+:\d+: )+")


class VideoDecodeError(RuntimeError):
    """A video file cannot be read: missing, empty, truncated, not a video, no video stream, or undecodable.

    The message names the file and the reason; ``path`` and ``reason`` hold them separately.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None) -> None:
        # One positional argument keeps the exception picklable and re-raisable by DataLoader workers.
        super().__init__(message)
        self.path = path
        self.reason = reason

    @classmethod
    def for_file(cls, path: str | Path, reason: str) -> VideoDecodeError:
        return cls(f"cannot decode video {path}: {reason}", path=str(path), reason=reason)


class DecordSource(AbstractContextManager):
    """A file opened with ``decord.VideoReader``; timestamps from ``get_frame_timestamp``."""

    def __init__(self, path: Path) -> None:
        try:
            import decord
        except ImportError as exc:  # "auto" catches this and falls back to PyAV
            raise ImportError("backend='decord' needs the decord package; use backend='pyav' or 'auto'") from exc

        self._path = path
        try:
            self._reader = decord.VideoReader(str(path), num_threads=0)
            count = len(self._reader)
            # Column 0 is the start of each frame's display interval, relative to the stream start.
            starts = self._reader.get_frame_timestamp(list(range(count)))[:, 0] if count else []
            self.timestamps = np.asarray(starts, dtype=np.float64)
            self.nominal_fps = float(self._reader.get_avg_fps())
        except Exception as exc:  # decord raises bare RuntimeError or its own DECORDError for every failure
            raise VideoDecodeError.for_file(path, f"decord cannot open it: {_decord_reason(exc)}") from exc

    def decode(self, indices: list[int]) -> np.ndarray:
        try:
            return self._reader.get_batch(indices).asnumpy()
        except Exception as exc:
            raise VideoDecodeError.for_file(self._path, f"decord cannot decode it: {_decord_reason(exc)}") from exc

    def __exit__(self, *exc_info) -> None:
        # Dropping the reader closes the file; decord has no explicit close.
        self._reader = None


class PyAVSource(AbstractContextManager):
    """A file opened with PyAV; frame timestamps from a packet index, frames decoded only where needed.

    Stream metadata is not trusted for the frame count or timing: ``stream.frames`` is 0 for webm/mkv and
    says nothing about variable frame rate. Instead the packets are demuxed once without decoding (cheap)
    and their presentation times sorted; packets FFmpeg flags as corrupt (cut by the end of a truncated file)
    are left out, so such frames are neither counted nor returned.
    """

    def __init__(self, path: Path) -> None:
        import av

        self._path = path
        try:
            self._container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError.for_file(path, f"cannot open it (truncated, damaged or not a video): {exc}") from exc
        try:
            self._stream = self._video_stream()
            self._stream.thread_type = "AUTO"
            self._pts, self._key_pts = self._index_packets()
        except av.error.FFmpegError as exc:
            self._container.close()
            raise VideoDecodeError.for_file(path, f"cannot read its packets: {exc}") from exc
        except VideoDecodeError:
            self._container.close()
            raise
        # Relative to the stream start, as decord reports them.
        self._start = self._stream.start_time if self._stream.start_time is not None else 0
        self.timestamps = (self._pts - self._start).astype(np.float64) * float(self._stream.time_base)
        self.nominal_fps = float(self._stream.average_rate or 0.0)

    def _video_stream(self):
        if not self._container.streams.video:
            found = ", ".join(stream.type for stream in self._container.streams) or "none"
            raise VideoDecodeError.for_file(self._path, f"it has no video stream (streams: {found})")
        return self._container.streams.video[0]

    def _index_packets(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the pts of every frame and of every keyframe, in presentation order."""
        frame_pts, key_pts = [], []
        for packet in self._container.demux(self._stream):
            pts = packet.pts if packet.pts is not None else packet.dts
            if packet.size == 0 or packet.is_corrupt or pts is None:
                continue  # end-of-stream marker, or a packet cut short by the end of the file
            frame_pts.append(pts)
            if packet.is_keyframe:
                key_pts.append(pts)
        # Without keyframe flags, decoding from the first frame is the only safe start.
        return np.sort(np.asarray(frame_pts, np.int64)), np.sort(np.asarray(key_pts or frame_pts[:1], np.int64))

    def decode(self, indices: list[int]) -> np.ndarray:
        import av

        wanted = self._pts[indices]
        frames: list[np.ndarray] = []
        try:
            while len(frames) < len(wanted):
                self._decode_from_keyframe(wanted, frames)
        except av.error.FFmpegError as exc:
            raise VideoDecodeError.for_file(self._path, f"a frame failed to decode: {exc}") from exc
        return np.stack(frames)

    def _decode_from_keyframe(self, wanted: np.ndarray, frames: list[np.ndarray]) -> None:
        """Seek to the keyframe before the next wanted frame and decode forward, appending wanted frames.

        Returns when the next wanted frame lies behind a later keyframe (seeking there skips decoding the gap),
        or when every wanted frame is decoded, so sparse samples of a long video decode only their own GOPs.
        """
        key_pts = self._key_pts_before(wanted[len(frames)])
        if self._seek_and_decode(wanted, frames, key_pts):
            return
        # A demuxer may land after the requested keyframe; decoding from the stream start is always right.
        if key_pts > self._key_pts[0] and self._seek_and_decode(wanted, frames, self._key_pts[0]):
            return
        seconds = (wanted[len(frames)] - self._start) * float(self._stream.time_base)
        raise VideoDecodeError.for_file(self._path, f"the frame at {seconds:.3f}s did not decode")

    def _seek_and_decode(self, wanted: np.ndarray, frames: list[np.ndarray], seek_to: int) -> bool:
        """Decode from ``seek_to``; return False if the next wanted frame is not output (skipped or undecodable)."""
        self._container.seek(int(seek_to), stream=self._stream, backward=True)
        for frame in self._decoded_frames():
            target = wanted[len(frames)]
            if frame.pts is None or frame.pts < target:
                continue
            if frame.pts > target:
                return False
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == len(wanted) or self._key_pts_before(wanted[len(frames)]) > frame.pts:
                return True
        return False

    def _key_pts_before(self, pts: int) -> int:
        key = max(int(np.searchsorted(self._key_pts, pts, side="right")) - 1, 0)
        return int(self._key_pts[key])

    def _decoded_frames(self):
        for packet in self._container.demux(self._stream):
            if not packet.is_corrupt:  # the same packets the index kept; the empty last one drains the decoder
                yield from packet.decode()

    def __exit__(self, *exc_info) -> None:
        self._container.close()


def open_source(path: Path, backend: str) -> DecordSource | PyAVSource:
    """Open ``path`` with ``backend`` (``"decord"`` or ``"pyav"``); raises ImportError if decord is missing."""
    return DecordSource(path) if backend == "decord" else PyAVSource(path)


def _decord_reason(exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _DECORD_NOISE.sub("", first_line)
