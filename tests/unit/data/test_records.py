"""Record schema, validation messages and JSON / JSONL / parquet loading (longvila_r1.data.records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longvila_r1.data.records import (
    CATEGORIES,
    RecordError,
    VideoQARecord,
    load_records,
    load_records_with_report,
    normalize_category,
    save_records,
)

GOOD = {"problem": "What does the man do first?", "answer": "B", "videos": "clips/v0.mp4"}


def write_jsonl(path: Path, rows: list, bom: bool = False) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("raw", ["B", "b", " B ", "(B)", "(b)", "B.", "B)"])
def test_answer_letter_normalised(raw):
    assert VideoQARecord(problem="Q?", answer=raw, videos="v.mp4").answer == "B"


@pytest.mark.parametrize("raw", ["", "BB", "B. Running", "2", "?"])
def test_bad_answer_letter(raw):
    with pytest.raises(RecordError, match="field 'answer': expected a letter A-Z") as info:
        VideoQARecord(problem="Q?", answer=raw, videos="v.mp4")
    assert info.value.field == "answer"


def test_answer_must_index_into_options():
    options = ["a", "b", "c", "d"]
    assert VideoQARecord(problem="Q?", answer="d", videos="v.mp4", options=options).answer == "D"
    with pytest.raises(RecordError, match=r"expected a letter A-D, got 'E'"):
        VideoQARecord(problem="Q?", answer="E", videos="v.mp4", options=options)


def test_option_labels_stripped_only_when_all_match():
    labelled = VideoQARecord(problem="Q?", answer="A", videos="v.mp4", options=["A. dog", "(B) cat", "C) cow"])
    assert labelled.options == ("dog", "cat", "cow")
    mixed = VideoQARecord(problem="Q?", answer="A", videos="v.mp4", options=["A. dog", "a cat"])
    assert mixed.options == ("A. dog", "a cat")


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("Temporal", "temporal"),
        ("temporal reasoning", "temporal"),
        ("Goal and Purpose", "goal_purpose"),
        ("goal-purpose", "goal_purpose"),
        ("goal_and_purpose", "goal_purpose"),
        ("Goal & Purpose", "goal_purpose"),
        ("purpose", "goal_purpose"),
        ("Spatial Reasoning", "spatial"),
        ("SPATIAL", "spatial"),
        ("Plot and Narrative", "plot_narrative"),
        ("plot", "plot_narrative"),
        ("narrative", "plot_narrative"),
        ("Plot & Narrative", "plot_narrative"),
        ("plot_narrative", "plot_narrative"),
        (None, None),
        ("  ", None),
    ],
)
def test_normalize_category(spelling, expected):
    assert normalize_category(spelling) == expected


@pytest.mark.parametrize("spelling", ["counting", "spatiotemporal", "temporal spatial", 3])
def test_unknown_category_names_valid_options(spelling):
    with pytest.raises(RecordError) as info:
        normalize_category(spelling)
    assert info.value.field == "category"
    if isinstance(spelling, str):
        assert all(c in str(info.value) for c in CATEGORIES)


def test_videos_single_element_list_accepted_several_rejected():
    assert VideoQARecord(problem="Q?", answer="A", videos=["a.mp4"]).videos == "a.mp4"
    with pytest.raises(RecordError, match="multi-video records are not supported"):
        VideoQARecord(problem="Q?", answer="A", videos=["a.mp4", "b.mp4"])


def test_response_forms():
    base = {"problem": "Q?", "answer": "C", "videos": "v.mp4"}
    assert VideoQARecord(**base).response() == "<answer>C</answer>"
    assert VideoQARecord(**base, reasoning="first x").response() == "<think>first x</think><answer>C</answer>"
    tagged = "<think>x</think><answer>C</answer>"
    assert VideoQARecord(**base, reasoning=tagged).response() == tagged
    assert VideoQARecord(**base, reasoning="<think>x</think>").response() == tagged


def test_extra_fields_kept_and_ids_durations_normalised():
    record = VideoQARecord.from_dict({**GOOD, "id": 7, "duration": 90, "difficulty": 3, "evidence": ["t=3s"]})
    assert record.id == "7" and record.duration == 90.0
    assert record.extra == {"difficulty": 3, "evidence": ["t=3s"]}
    assert hash(record) == hash(VideoQARecord.from_dict({**GOOD, "id": 7, "duration": 90}))


def test_resolve_against_root(tmp_path):
    record = VideoQARecord.from_dict(GOOD, video_root=tmp_path)
    assert record.video_path == (tmp_path / "clips/v0.mp4").resolve()
    assert record.resolve("/data") == Path("/data/clips/v0.mp4")
    assert VideoQARecord.from_dict(GOOD).video_path == Path("clips/v0.mp4")


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("{not json", None, "train.jsonl line 2: invalid JSON"),
        ("[1, 2]", None, "train.jsonl line 2: expected a JSON object, got [1, 2] (list)"),
        ({"problem": "Q?", "answer": "A"}, "videos", "train.jsonl line 2, field 'videos': missing required field"),
        ({**GOOD, "problem": 5}, "problem", "field 'problem': expected a string, got 5 (int)"),
        ({**GOOD, "problem": "   "}, "problem", "field 'problem': must not be empty"),
        ({**GOOD, "answer": None}, "answer", "field 'answer': expected a letter A-Z, got null"),
        ({**GOOD, "options": "A. x"}, "options", "field 'options': expected a list of strings"),
        ({**GOOD, "options": ["x", "y"], "answer": "C"}, "answer", "field 'answer': expected a letter A-B, got 'C'"),
        ({**GOOD, "category": "counting"}, "category", "field 'category': unknown category 'counting'"),
        ({**GOOD, "duration": "10s"}, "duration", "field 'duration': expected a non-negative number"),
    ],
)
def test_jsonl_errors_are_located(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, row, GOOD])
    with pytest.raises(RecordError) as info:
        load_records(path)
    assert message in str(info.value)
    assert (info.value.line, info.value.unit, info.value.field) == (2, "line", field)
    assert info.value.path == path


def test_jsonl_blank_lines_bom_and_skip_report(tmp_path):
    rows = [GOOD, "", "   ", {**GOOD, "answer": "E", "options": list("abcd")}, "{oops", {**GOOD, "answer": "d"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows, bom=True)
    report = load_records_with_report(path, on_error="skip")
    assert [r.answer for r in report.records] == ["B", "D"]
    assert report.num_skipped == 2
    assert [(e.line, e.field) for e in report.skipped] == [(4, "answer"), (5, None)]
    assert str(report.skipped[0]) == "train.jsonl line 4, field 'answer': expected a letter A-D, got 'E'"
    assert len(load_records(path, on_error="skip")) == 2
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        load_records(path, on_error="ignore")


def test_json_list_and_data_wrapper(tmp_path):
    listed = tmp_path / "a.json"
    listed.write_text("\ufeff" + json.dumps([GOOD, {**GOOD, "answer": "c"}]), encoding="utf-8")
    wrapped = tmp_path / "b.json"
    wrapped.write_text(json.dumps({"data": [GOOD], "version": 1}))
    assert [r.answer for r in load_records(listed)] == ["B", "C"]
    assert len(load_records(wrapped)) == 1
    assert load_records(listed)[0].video_root == str(tmp_path)


def test_json_errors(tmp_path):
    bad_item = tmp_path / "a.json"
    bad_item.write_text(json.dumps([GOOD, {**GOOD, "answer": "zz"}]))
    with pytest.raises(RecordError, match=r"a.json index 1, field 'answer'"):
        load_records(bad_item)
    broken = tmp_path / "b.json"
    broken.write_text('[\n{"problem": }\n]')
    with pytest.raises(RecordError, match=r"b.json line 2: invalid JSON"):
        load_records(broken)
    scalar = tmp_path / "c.json"
    scalar.write_text('"hello"')
    with pytest.raises(RecordError, match=r'expected a list of records or \{"data"'):
        load_records(scalar)
    with pytest.raises(RecordError, match=r"unsupported record file suffix '\.csv'"):
        load_records(tmp_path / "x.csv")


def test_jsonl_content_in_json_file(tmp_path):
    path = write_jsonl(tmp_path / "train.json", [GOOD, GOOD])
    assert len(load_records(path)) == 2


def test_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="parquet support needs pyarrow")
    import pyarrow as pa

    rows = [
        {**GOOD, "options": ["a", "b"], "category": "Spatial", "duration": 12.5},
        {**GOOD, "answer": "c", "options": ["a", "b", "c"], "category": None, "duration": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "eval.parquet")
    records = load_records(tmp_path / "eval.parquet")
    assert [(r.answer, r.options, r.category) for r in records] == [
        ("B", ("a", "b"), "spatial"),
        ("C", ("a", "b", "c"), None),
    ]
    pq.write_table(pa.Table.from_pylist([*rows, {**GOOD, "answer": "q", "options": ["a"]}]), tmp_path / "bad.parquet")
    with pytest.raises(RecordError, match=r"bad.parquet row 2, field 'answer': expected a letter A-A"):
        load_records(tmp_path / "bad.parquet")


def test_check_videos(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/v0.mp4").write_bytes(b"")
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, {**GOOD, "videos": "clips/missing.mp4"}])
    assert len(load_records(path)) == 2
    with pytest.raises(RecordError, match=r"line 2, field 'videos': video file not found: .*missing.mp4"):
        load_records(path, check_videos=True)
    assert len(load_records(path, check_videos=True, on_error="skip")) == 1


def test_save_round_trip(tmp_path):
    records = [
        VideoQARecord.from_dict({**GOOD, "options": ["A. x", "B. y"], "category": "Plot & Narrative", "id": 1}),
        VideoQARecord.from_dict({**GOOD, "reasoning": "Zuerst läuft er.", "template": "t1", "evidence": [1, 2]}),
    ]
    path = save_records(records, tmp_path / "out" / "train.jsonl")
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {**GOOD, "category": "plot_narrative", "options": ["x", "y"], "id": "1"}
    assert load_records(path) == records
