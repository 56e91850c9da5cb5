"""read_video on real files written with PyAV: containers x backends, sampling, VFR, damaged files."""

from __future__ import annotations

import importlib.util
import sys

import av
import numpy as np
import pytest
import torch

from longvila_r1.data.video import VideoDecodeError, fps_indices, read_video, uniform_indices
from longvila_r1.data.video_writer import write_video

HAS_DECORD = importlib.util.find_spec("decord") is not None
DECORD = pytest.param("decord", marks=pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed"))
BACKENDS = [DECORD, "pyav"]
CONTAINERS = [".mp4", ".webm", ".mkv", ".avi"]
FPS = 8
NUM_FRAMES = 30
# H.264 with B-frames and 8-frame GOPs: decode order differs from presentation order and sparse reads seek.
H264_GOPS = {"x264-params": "keyint=8:min-keyint=8:bframes=2:scenecut=0"}
# Frame i is a flat grey of level 8 * i; lossy codecs stay within a few levels of it.
GREY_STEP = 8
GREY_TOLERANCE = 3


def grey_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    levels = (np.arange(count) * GREY_STEP) % 256
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).astype(np.uint8)


def noise_frames(count: int, size: int = 64) -> np.ndarray:
    # Incompressible frames make packets large, so a cut lands inside the frame data, not in the header.
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def write(path, frames, **kwargs):
    options = H264_GOPS if path.suffix in (".mp4", ".mkv") else None
    return write_video(path, frames, fps=FPS, encoder_options=options, **kwargs)


def assert_grey_levels(frames: torch.Tensor, indices: list[int]) -> None:
    levels = frames.float().mean(dim=(1, 2, 3))  # [T]
    expected = torch.tensor([(GREY_STEP * i) % 256 for i in indices], dtype=torch.float32)
    torch.testing.assert_close(levels, expected, atol=GREY_TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, object]:
    """One 30-frame 8 fps grey-ramp video per container."""
    folder = tmp_path_factory.mktemp("videos")
    return {suffix: write(folder / f"ramp{suffix}", grey_frames(NUM_FRAMES)) for suffix in CONTAINERS}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", CONTAINERS)
def test_every_container_decodes_in_order(videos, suffix, backend):
    clip = read_video(videos[suffix], backend=backend)
    assert clip.frames.shape == (NUM_FRAMES, 48, 64, 3) and clip.frames.dtype == torch.uint8
    assert clip.indices == list(range(NUM_FRAMES))
    assert_grey_levels(clip.frames, clip.indices)
    torch.testing.assert_close(clip.timestamps, torch.arange(NUM_FRAMES, dtype=torch.float64) / FPS, atol=1e-3, rtol=0)
    assert (clip.num_source_frames, clip.backend, clip.path) == (NUM_FRAMES, backend, str(videos[suffix]))
    assert clip.source_fps == pytest.approx(FPS) and clip.duration == pytest.approx(NUM_FRAMES / FPS)


@pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed")
@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("sampling", [{}, {"num_frames": 7}, {"fps": 3.0}, {"num_frames": 40}])
def test_backends_agree_bit_identically(videos, suffix, sampling):
    by_decord = read_video(videos[suffix], backend="decord", **sampling)
    by_pyav = read_video(videos[suffix], backend="pyav", **sampling)
    assert by_decord.indices == by_pyav.indices
    assert torch.equal(by_decord.frames, by_pyav.frames)
    torch.testing.assert_close(by_decord.timestamps, by_pyav.timestamps, atol=1e-3, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", CONTAINERS)
def test_sparse_reads_seek_to_the_right_frames(videos, suffix, backend):
    # mp4/mkv have 8-frame GOPs with B-frames: sparse reads seek between keyframes and must still land exactly.
    every = read_video(videos[suffix], backend=backend)
    for count in (1, 2, 3, 5, 11):
        clip = read_video(videos[suffix], num_frames=count, backend=backend)
        assert torch.equal(clip.frames, every.frames[clip.indices])


def test_auto_prefers_decord_and_falls_back_to_pyav_without_it(videos, monkeypatch):
    assert read_video(videos[".mp4"], num_frames=4).backend == ("decord" if HAS_DECORD else "pyav")
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    clip = read_video(videos[".mp4"], num_frames=4)
    assert clip.backend == "pyav"
    assert_grey_levels(clip.frames, clip.indices)
    with pytest.raises(ImportError, match="decord"):
        read_video(videos[".mp4"], backend="decord")


def test_uniform_indices_take_segment_centres():
    assert uniform_indices(10, 5) == [1, 3, 5, 7, 9]
    assert uniform_indices(30, 4) == [3, 11, 18, 26]
    assert uniform_indices(7, 7) == list(range(7))
    assert uniform_indices(3, 5) == [0, 0, 1, 2, 2]
    assert uniform_indices(3, 5, short_video="fewer") == [0, 1, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_num_frames_samples_uniformly(videos, backend):
    clip = read_video(videos[".mp4"], num_frames=4, backend=backend)
    assert clip.indices == [3, 11, 18, 26]
    assert_grey_levels(clip.frames, clip.indices)
    torch.testing.assert_close(clip.timestamps, torch.tensor([3, 11, 18, 26], dtype=torch.float64) / FPS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_samples_by_time_and_max_frames_falls_back_to_uniform(videos, backend):
    # 30 frames at 8 fps span 3.625 s: one frame every 0.5 s is 8 frames, every 4th.
    clip = read_video(videos[".webm"], fps=2, backend=backend)
    assert clip.indices == list(range(0, 29, 4))
    assert_grey_levels(clip.frames, clip.indices)
    capped = read_video(videos[".webm"], fps=2, max_frames=5, backend=backend)
    assert capped.indices == uniform_indices(NUM_FRAMES, 5) == [3, 9, 15, 21, 27]  # still spans the whole video
    assert read_video(videos[".webm"], fps=2, max_frames=8, backend=backend).indices == clip.indices
    # Faster than the source: each frame once, no repeats.
    assert read_video(videos[".webm"], fps=100, backend=backend).indices == list(range(NUM_FRAMES))


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_frames_are_capped_by_max_frames(videos, backend):
    assert read_video(videos[".mkv"], max_frames=6, backend=backend).indices == uniform_indices(NUM_FRAMES, 6)
    assert read_video(videos[".mkv"], num_frames=10, max_frames=6, backend=backend).indices == uniform_indices(30, 6)


VFR_TIMES = [0.0, 0.1, 0.2, 0.3, 1.0, 1.05, 1.1, 1.15, 1.2, 2.0, 2.6, 2.7]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_fps_sampling_of_a_variable_frame_rate_video_picks_the_frame_on_screen(tmp_path, suffix, backend):
    path = write(tmp_path / f"vfr{suffix}", grey_frames(len(VFR_TIMES)), timestamps=VFR_TIMES)
    clip = read_video(path, fps=2, backend=backend)
    # Sampling times 0, 0.5, ..., 2.5 s -> frames shown at those times (at or before each).
    assert clip.indices == [0, 3, 4, 8, 9]
    assert_grey_levels(clip.frames, clip.indices)
    torch.testing.assert_close(clip.timestamps, torch.tensor([0.0, 0.3, 1.0, 1.2, 2.0], dtype=torch.float64))
    assert clip.num_source_frames == len(VFR_TIMES)
    assert clip.source_fps == pytest.approx((len(VFR_TIMES) - 1) / 2.7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", CONTAINERS)
def test_odd_frame_sizes(tmp_path, suffix, backend):
    path = write(tmp_path / f"odd{suffix}", grey_frames(6, height=37, width=63))
    clip = read_video(path, num_frames=3, backend=backend)
    assert clip.frames.shape == (3, 37, 63, 3)
    assert_grey_levels(clip.frames, clip.indices)


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_video_repeats_or_returns_fewer(tmp_path, backend):
    path = write(tmp_path / "short.mp4", grey_frames(3))
    repeated = read_video(path, num_frames=5, backend=backend)
    assert repeated.indices == [0, 0, 1, 2, 2] and repeated.frames.shape[0] == 5
    assert torch.equal(repeated.frames[0], repeated.frames[1])
    assert_grey_levels(repeated.frames, repeated.indices)
    fewer = read_video(path, num_frames=5, short_video="fewer", backend=backend)
    assert fewer.indices == [0, 1, 2] and fewer.frames.shape[0] == 3


def test_fps_indices_on_raw_timestamps():
    times = np.array(VFR_TIMES)
    assert fps_indices(times, 2.0) == [0, 3, 4, 8, 9]
    assert fps_indices(np.array([5.0]), 1.0) == [0]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, object]:
    """Broken files, by name; each must raise VideoDecodeError naming the file."""
    folder = tmp_path_factory.mktemp("damaged")
    files = {"missing": folder / "missing.mp4", "empty": folder / "empty.mp4"}
    files["empty"].write_bytes(b"")
    files["random"] = folder / "random.mp4"
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["text"] = folder / "notes.mkv"
    files["text"].write_text("not a video\n" * 100)
    # write_video puts the mp4 index (moov atom) last: the first half has no index and cannot open.
    whole = write(folder / "whole.mp4", noise_frames(20)).read_bytes()
    files["truncated_mp4"] = folder / "truncated.mp4"
    files["truncated_mp4"].write_bytes(whole[: len(whole) // 2])
    files["audio_only"] = _write_audio_only(folder / "audio_only.mp4")
    return files


def same_frames(clip) -> torch.Tensor:
    """Indices in the undamaged file of the frames in ``clip``, matched by timestamp (cuts can leave holes)."""
    return (clip.timestamps * FPS).round().long()


def _write_audio_only(path):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("random", "not a video"),
        ("text", "not a video"),
        ("truncated_mp4", "truncated"),
        ("audio_only", "video stream"),
    ],
)
def test_damaged_files_raise_video_decode_error_naming_the_file(damaged, name, reason, backend):
    with pytest.raises(VideoDecodeError) as caught:
        read_video(damaged[name], backend=backend)
    assert str(damaged[name]) in str(caught.value)
    assert caught.value.path == str(damaged[name])
    if backend != "decord":  # decord's own messages are terser; PyAV's reason is always included
        assert reason in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", [".webm", ".mkv"])
def test_truncated_matroska_returns_only_the_frames_that_really_decode(tmp_path, suffix, backend):
    whole = write(tmp_path / f"whole{suffix}", noise_frames(24))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    reference = read_video(whole, backend="pyav")
    clip = read_video(cut, backend=backend)
    # The header is intact: the readable part is the video, and every frame returned is exact.
    assert 0 < clip.num_source_frames < 24 and len(clip.indices) == clip.num_source_frames
    assert torch.equal(clip.frames, reference.frames[same_frames(clip)])


def test_avi_cut_inside_a_frame_drops_that_frame_with_pyav(tmp_path):
    whole = write(tmp_path / "whole.avi", noise_frames(24))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    reference = read_video(whole, backend="pyav")
    clip = read_video(cut, backend="pyav")
    assert 0 < clip.num_source_frames < 24
    assert torch.equal(clip.frames, reference.frames[same_frames(clip)])


def test_auto_falls_back_to_pyav_when_decord_fails_on_the_file(tmp_path):
    # A streamed (faststart) mp4 cut short: the index promises frames whose data is gone. decord fails on the
    # missing data; PyAV keeps the frames whose packets are complete.
    whole = write(tmp_path / "whole.mp4", noise_frames(24), container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    reference = read_video(whole, backend="pyav")
    clip = read_video(cut)
    assert clip.backend == "pyav" and 0 < clip.num_source_frames < 24
    assert torch.equal(clip.frames, reference.frames[same_frames(clip)])
    if HAS_DECORD:
        with pytest.raises(VideoDecodeError, match="decord"):
            read_video(cut, backend="decord")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"num_frames": 4, "fps": 2.0}, ["num_frames", "fps"]),
        ({"num_frames": 0}, ["num_frames", ">= 1"]),
        ({"num_frames": 2.5}, ["num_frames"]),
        ({"max_frames": 0}, ["max_frames"]),
        ({"fps": 0}, ["fps", "> 0"]),
        ({"fps": -1.0}, ["fps"]),
        ({"fps": float("nan")}, ["fps"]),
        ({"backend": "ffmpeg"}, ["backend", "auto", "decord", "pyav"]),
        ({"short_video": "pad"}, ["short_video", "repeat", "fewer"]),
    ],
)
def test_invalid_arguments_name_the_argument_and_the_options(videos, kwargs, words):
    with pytest.raises(ValueError) as caught:
        read_video(videos[".mp4"], **kwargs)
    for word in words:
        assert word in str(caught.value)
