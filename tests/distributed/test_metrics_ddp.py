"""VideoQAMetrics on a real 2-rank gloo group: each sample counted once, values equal to one process on the union."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from longvila_r1.evaluation import VideoQAMetrics

GOOD, BARE = "<think>x</think><answer>{}</answer>", "Answer: {}"
# (response, answer, category, duration): 9 samples, split 5 / 4 so the shards are uneven.
SAMPLES = [
    (GOOD.format("B"), "B", "temporal", 30.0),
    (BARE.format("A"), "A", "spatial", 200.0),
    (GOOD.format("C"), "D", "goal_purpose", "long"),
    ("no idea", "A", "plot_narrative", None),
    (GOOD.format("A"), "A", None, 1200.0),
    (BARE.format("D"), "D", "temporal", "short"),
    (GOOD.format("B"), "C", "spatial", 119.9),
    (GOOD.format("D"), "D", "temporal", "medium"),
    ("(C)", "C", "goal_purpose", 3600.0),
]
STATES = ("correct", "total", "formatted", "duration_correct", "duration_total")


def _update(metric: VideoQAMetrics, samples: list[tuple]) -> None:
    responses, answers, categories, durations = (list(column) for column in zip(*samples, strict=True))
    metric.update(responses, answers, categories, durations=durations)


def _score(rank: int, mode: str) -> dict:
    metric = VideoQAMetrics()
    if mode == "dp":  # each rank scores its own samples: rank 0 the first 5, rank 1 the other 4
        _update(metric, SAMPLES[:5] if rank == 0 else SAMPLES[5:])
    elif rank == 0:  # "sp": both ranks hold every sample; only the first rank of the group scores them
        _update(metric, SAMPLES)
    local = {name: getattr(metric, name).tolist() for name in STATES}
    values = {key: value.item() for key, value in metric.compute().items()}
    with metric.sync_context():
        synced = {name: getattr(metric, name).tolist() for name in STATES}
    return {"local": local, "synced": synced, "values": values}


def _worker(rank: int, world: int, workdir: str) -> None:
    # The sp case computes on a rank that never updated, on purpose.
    warnings.filterwarnings("ignore", message=".*was called before the ``update`` method")
    dist.init_process_group("gloo", init_method=f"file://{workdir}/store", rank=rank, world_size=world)
    try:
        result = {mode: _score(rank, mode) for mode in ("dp", "sp")}
        Path(workdir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Both modes, run once on one 2-rank group (process start-up dominates the test time)."""
    workdir = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(2, str(workdir)), nprocs=2, join=True)
    return [json.loads((workdir / f"rank{rank}.json").read_text()) for rank in range(2)]


def _reference() -> dict[str, float]:
    metric = VideoQAMetrics()
    _update(metric, SAMPLES)
    return {key: value.item() for key, value in metric.compute().items()}


@pytest.mark.parametrize("mode", ["dp", "sp"])
def test_each_sample_counted_once(ranks: list[dict], mode: str) -> None:
    ranks = [r[mode] for r in ranks]
    reference = _reference()
    for name in STATES:
        summed = torch.tensor([r["local"][name] for r in ranks]).sum(0)
        assert summed.tolist() == ranks[0]["synced"][name] == ranks[1]["synced"][name], name
    assert sum(ranks[0]["synced"]["total"]) == len(SAMPLES)
    assert sum(ranks[0]["synced"]["duration_total"]) == sum(s[3] is not None for s in SAMPLES)
    for r in ranks:
        assert r["values"].keys() == reference.keys()
        assert r["values"] == pytest.approx(reference)
