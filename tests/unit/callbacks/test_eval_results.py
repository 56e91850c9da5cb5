"""EvalResultsWriter: every response written and scored, markdown table, resume that skips finished samples."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

from longvila_r1.callbacks import EvalResultsWriter
from longvila_r1.data.records import VideoQARecord, save_records
from longvila_r1.data.video_writer import write_video
from longvila_r1.evaluation import BenchmarkDataModule, extract_answer
from longvila_r1.modules import CoTSFTModule

CATEGORIES = ["temporal", "spatial", "temporal", "goal_purpose", "plot_narrative"]


class SilentModule(CoTSFTModule):
    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    """Five questions on two 8-frame videos; the last has no id (BenchmarkDataModule names it)."""
    root = tmp_path_factory.mktemp("lvr")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_video(root / "videos" / f"{name}.mp4", rng.integers(0, 255, (8, 32, 32, 3), np.uint8), fps=4.0)
    records = [
        VideoQARecord(
            f"Question {i}?",
            "ABCD"[i % 4],
            f"videos/{'ab'[i % 2]}.mp4",
            category=category,
            options=["red", "blue", "green", "yellow"],
            id=f"q{i}" if i < 4 else None,
            duration=2.0 if i % 2 else 300.0,
        )
        for i, category in enumerate(CATEGORIES)
    ]
    save_records(records, root / "eval.jsonl")
    return root


def _validate(
    eval_dir: Path, output_dir: Path, module_class=CoTSFTModule, module_kwargs=None, **trainer_kwargs
) -> dict:
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EvalResultsWriter(str(output_dir))],
        **trainer_kwargs,
    )
    module = module_class(path="tiny", seed=0, eval_max_new_tokens=6, **(module_kwargs or {}))
    data = BenchmarkDataModule(data_dir=str(eval_dir), num_frames=4, eval_batch_size=2)
    logged = (trainer.validate(module, datamodule=data, verbose=False) or [{}])[0]
    return {**json.loads((output_dir / "results.json").read_text()), "logged": logged}


def test_every_response_is_written_and_scored(eval_dir: Path, tmp_path: Path) -> None:
    document = _validate(eval_dir, tmp_path)
    samples = document["samples"]
    assert [s["id"] for s in samples] == ["eval-4", "q0", "q1", "q2", "q3"]
    for sample in samples:
        assert sample["extracted"] == extract_answer(sample["response"], sample["options"])
        assert sample["correct"] == (sample["extracted"] == sample["answer"])
    assert {s["category"] for s in samples} == set(CATEGORIES)
    assert document["summary"]["num_samples"] == 5
    assert set(document["summary"]["groups"]["duration"]) == {"short", "medium"}
    meta = document["meta"]
    assert (meta["num_frames"], meta["samples_this_run"], meta["model"]) == (4, 5, "tiny")
    assert meta["seconds_per_sample"] > 0 and meta["sampled_answers"] is None
    assert "sampled" not in document["summary"]
    table = (tmp_path / "results.md").read_text()
    assert "| overall | | 5 |" in table and "| category | temporal | 2 |" in table and "| format rate |" in table
    assert not list(tmp_path.glob("*.partial.jsonl"))


def test_sampled_answers_are_written_with_the_logged_pass_and_majority(eval_dir: Path, tmp_path: Path) -> None:
    document = _validate(eval_dir, tmp_path, module_kwargs={"eval_samples": 3, "eval_temperature": 1.0})
    assert all(len(sample["sampled_answers"]) == 3 for sample in document["samples"])
    sampled, logged = document["summary"]["sampled"], document["logged"]
    assert (sampled["n"], sampled["k"]) == (5, 3)
    for key, metric in (("sample_acc", "val/sample_acc"), ("pass_at_k", "val/pass@3"), ("maj_at_k", "val/maj@3")):
        assert sampled[key] == pytest.approx(logged[metric])
    assert (document["meta"]["sampled_answers"], document["meta"]["sampling_temperature"]) == (3, 1.0)
    assert "| sampled answers | pass@3 | 5 |" in (tmp_path / "results.md").read_text()


def test_a_rerun_skips_finished_samples(eval_dir: Path, tmp_path: Path) -> None:
    first = _validate(eval_dir, tmp_path, limit_val_batches=1)
    assert first["meta"]["samples_this_run"] == 2
    second = _validate(eval_dir, tmp_path)
    assert second["meta"]["samples_this_run"] == 3
    assert [s["id"] for s in second["samples"]] == ["eval-4", "q0", "q1", "q2", "q3"]
    assert {s["id"]: s for s in first["samples"]}.items() <= {s["id"]: s for s in second["samples"]}.items()
    third = _validate(eval_dir, tmp_path)  # nothing left to do: the results stay as they are
    assert third["samples"] == second["samples"]


def test_a_killed_run_leaves_its_samples_for_the_next(eval_dir: Path, tmp_path: Path) -> None:
    _validate(eval_dir, tmp_path, limit_val_batches=1)
    done = json.loads((tmp_path / "results.json").read_text())["samples"]
    (tmp_path / "results.json").unlink()
    (tmp_path / "results.rank0.partial.jsonl").write_text("".join(json.dumps(s) + "\n" for s in done))
    after = _validate(eval_dir, tmp_path)
    assert after["meta"]["samples_this_run"] == 3 and after["summary"]["num_samples"] == 5


def test_the_module_must_return_its_responses(eval_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"validation_step to return \{'responses'"):
        _validate(eval_dir, tmp_path, module_class=SilentModule)
