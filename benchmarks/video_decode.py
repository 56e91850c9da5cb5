"""Decode time of ``read_video`` with decord and PyAV, and the ratio between them.

Writes two H.264 videos (64x64 and 640x360, default 2048 frames at 30 fps, keyframe every 250 frames as
x264 defaults to) into a temporary folder, then times ``read_video(path, num_frames=n, backend=...)`` for each
video, frame count and backend: the median of ``--runs`` runs, each opening the file afresh as a data loader
does.

Usage:
    python benchmarks/video_decode.py                 # ~40 s on 2 CPU cores
    python benchmarks/video_decode.py --frames 512 --counts 16 64 --runs 5
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from longvila_r1.data.video import read_video
from longvila_r1.data.video_writer import write_video

SIZES = ((64, 64), (360, 640))  # (height, width)
SOURCE_FPS = 30
# Realistic GOPs (x264's default keyint) instead of the writer's test-friendly defaults.
ENCODER_OPTIONS = {"tune": "film", "x264-params": "keyint=250"}


def moving_texture(num_frames: int, height: int, width: int, step: int = 4) -> np.ndarray:
    """``[T, H, W, 3]`` view of a noise texture panning ``step`` pixels per frame (no copy: ~10 MB, not GBs)."""
    texture = np.random.default_rng(0).integers(0, 256, (height, width + step * num_frames, 3), dtype=np.uint8)
    texture = np.ascontiguousarray(texture)
    row, column, channel = texture.strides
    shape, strides = (num_frames, height, width, 3), (step * column, row, column, channel)
    return np.lib.stride_tricks.as_strided(texture, shape=shape, strides=strides, writeable=False)


def median_seconds(path: Path, num_frames: int, backend: str, runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        clip = read_video(path, num_frames=num_frames, backend=backend)
        timings.append(time.perf_counter() - start)
        assert clip.backend == backend and clip.frames.shape[0] == num_frames
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2048, help="frames per source video")
    parser.add_argument("--counts", type=int, nargs="+", default=[64, 512], help="frames sampled per read")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case (median reported)")
    args = parser.parse_args(argv)
    backends = ["decord", "pyav"] if importlib.util.find_spec("decord") else ["pyav"]
    print(f"{'video':>16} {'sampled':>8} " + " ".join(f"{name + ' ms':>10}" for name in backends) + "  pyav/decord")
    with tempfile.TemporaryDirectory() as folder:
        for height, width in SIZES:
            path = Path(folder) / f"{width}x{height}.mp4"
            frames = moving_texture(args.frames, height, width)
            write_video(path, frames, fps=SOURCE_FPS, encoder_options=ENCODER_OPTIONS)
            for count in args.counts:
                seconds = {name: median_seconds(path, count, name, args.runs) for name in backends}
                ratio = f"{seconds['pyav'] / seconds['decord']:.2f}" if "decord" in seconds else "n/a"
                cells = " ".join(f"{1e3 * seconds[name]:>10.1f}" for name in backends)
                print(f"{f'{width}x{height}x{args.frames}':>16} {count:>8} {cells}  {ratio:>11}", flush=True)


if __name__ == "__main__":
    main()
