"""ParallelLayout: coordinates on the (dp, sp) mesh and argument errors (no process group needed)."""

from __future__ import annotations

import pytest

from longvila_r1.parallel import ParallelLayout


def test_sp_groups_are_consecutive_ranks():
    layouts = [ParallelLayout(8, rank, sequence_parallel_size=4) for rank in range(8)]
    assert [(x.dp_rank, x.sp_rank) for x in layouts] == [(r // 4, r % 4) for r in range(8)]
    assert layouts[5].sp_group_ranks == [4, 5, 6, 7]
    assert layouts[5].dp_group_ranks == [1, 5]
    assert {x.dp_size for x in layouts} == {2}


def test_without_sequence_parallelism_every_rank_is_its_own_sample():
    layout = ParallelLayout(4, 3)
    assert (layout.dp_size, layout.dp_rank, layout.sp_rank, layout.sequence_parallel) == (4, 3, 0, False)
    assert layout.sp_group is None  # the SP functions then run as a single process


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 0, 1), "world_size must be >= 1"),
        ((2, 2, 1), r"rank must be in \[0, world_size=2\)"),
        ((4, 0, 0), "sequence_parallel_size must be >= 1"),
        ((6, 0, 4), r"must divide the number of processes \(world_size=6\); valid sizes: \[1, 2, 3, 6\]"),
    ],
)
def test_argument_errors_name_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        ParallelLayout(*args)


def test_groups_need_build():
    with pytest.raises(RuntimeError, match=r"call ParallelLayout\.build"):
        _ = ParallelLayout(2, 0, 2).sp_group
