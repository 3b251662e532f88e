"""The one check of an interrupted run's progress record (text2token.resumable.recorded_progress), which encode and
index both use: each refusal is one line that says why and what to delete, and a continuable record comes back."""

import json

import pytest

from text2token.errors import Text2TokenError
from text2token.resumable import Source, recorded_progress

FINGERPRINT = {"input": "/data/a.txt", "bytes": 10, "mtime_ns": 1, "rows": 3, "model": "abc", "chunk": 4}


def _record(tmp_path, **state):
    path = tmp_path / "out.progress.json"
    path.write_text(json.dumps({"rows_done": 4, "bytes_done": 99, "fingerprint": FINGERPRINT, **state}))
    return path


def test_a_matching_record_is_returned_with_integer_counts(tmp_path):
    state = recorded_progress(
        _record(tmp_path, rows_done="4"), FINGERPRINT, True, "encode", "A and B", ("rows_done", "bytes_done")
    )
    assert state["rows_done"] == 4 and state["bytes_done"] == 99


@pytest.mark.parametrize(
    "record,fingerprint,resume,expected",
    [
        ("{not json", FINGERPRINT, True, r"out.progress.json is damaged \(not the progress record of an interrupted "),
        (None, FINGERPRINT, False, "A and B hold an interrupted encode: pass --resume to continue it"),
        (None, None, True, "of a file: continue it with --resume from that file"),
        (None, {**FINGERPRINT, "chunk": 8}, True, "the interrupted encode used another chunk"),
        (None, {**FINGERPRINT, "bytes": 11}, True, "used another input file contents"),
    ],
)
def test_each_refusal_says_why_and_what_to_delete(tmp_path, record, fingerprint, resume, expected):
    path = _record(tmp_path)
    if record is not None:
        path.write_text(record)
    with pytest.raises(Text2TokenError, match=expected) as err:
        recorded_progress(path, fingerprint, resume, "encode", "A and B", ("rows_done", "bytes_done"))
    assert "\n" not in str(err.value) and ("delete" in str(err.value) or "--resume" in str(err.value))


def test_a_record_missing_a_count_is_damaged(tmp_path):
    path = _record(tmp_path)
    path.write_text(json.dumps({"rows_done": 4, "fingerprint": FINGERPRINT}))
    with pytest.raises(Text2TokenError, match="is damaged"):
        recorded_progress(path, FINGERPRINT, True, "encode", "A and B", ("rows_done", "bytes_done"))


def test_source_chunks_are_aligned_so_a_resumed_run_cuts_the_same_chunks(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"text {i}\n" for i in range(10)))
    source = Source(str(corpus))
    whole = [(first, ids) for first, ids, _ in source.chunks(0, 4)]
    assert whole == [(0, ["0", "1", "2", "3"]), (4, ["4", "5", "6", "7"]), (8, ["8", "9"])]  # ids: line numbers
    resumed = [(first, ids) for first, ids, _ in source.chunks(4, 4)]
    assert resumed == whole[1:] and source.rows == 10
