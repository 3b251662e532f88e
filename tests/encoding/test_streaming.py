"""Streaming encode: chunks written as they are computed, and an interrupted encode resumed to the same bytes."""

import json

import numpy as np
import pytest
from helpers import SENTENCES, accelerate_launch, interrupted_at_call

from text2token import Text2TokenModel
from text2token.cli import main


def _corpus(tmp_path, suffix=".txt"):
    texts = [f"{s} (variant {i})" for i, s in enumerate(SENTENCES[:8] * 2)]
    path = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": f"doc{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    else:
        path.write_text("\n".join(texts) + "\n")
    return path, texts


def test_chunked_encode_matches_encode_in_every_format(tmp_path, tiny_model_dir):
    src, texts = _corpus(tmp_path, ".jsonl")
    ref = Text2TokenModel.from_pretrained(str(tiny_model_dir), device="cpu").encode(texts)
    for suffix in (".npy", ".jsonl", ".parquet"):
        out = tmp_path / f"o{suffix}"
        assert (
            main(
                [
                    "encode",
                    "-q",
                    "--model",
                    str(tiny_model_dir),
                    "--input",
                    str(src),
                    "--output",
                    str(out),
                    "--chunk-size",
                    "5",
                ]
            )
            == 0
        )
        if suffix == ".npy":
            got, ids = np.load(out), None
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            got, ids = np.array([r["embedding"] for r in rows], dtype=np.float32), [r["id"] for r in rows]
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(out)
            got, ids = np.array(table.column("embedding").to_pylist(), dtype=np.float32), table.column("id").to_pylist()
        np.testing.assert_allclose(got, ref, atol=1e-5)
        assert ids is None or ids == [f"doc{i}" for i in range(len(texts))]
        assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.progress.json"))


@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_interrupted_encode_resumes_to_the_same_bytes(tmp_path, tiny_model_dir, capsys, suffix):
    src, _ = _corpus(tmp_path)
    args = ["encode", "-q", "--model", str(tiny_model_dir), "--input", str(src), "--chunk-size", "4"]
    whole = tmp_path / f"whole{suffix}"
    assert main([*args, "--output", str(whole)]) == 0
    out = tmp_path / f"out{suffix}"
    with interrupted_at_call(Text2TokenModel, "encode", 3):  # Ctrl-C while the third chunk is being encoded
        assert main([*args, "--output", str(out)]) == 130
    assert not out.exists(), "no output under its name until complete"
    progress = json.loads((tmp_path / f"out{suffix}.progress.json").read_text())
    assert progress["rows_done"] == 8  # two chunks of 4 were written
    capsys.readouterr()
    assert main([*args, "--output", str(out)]) == 2  # without --resume: the partial output is not thrown away
    assert "--resume to continue it" in capsys.readouterr().err
    assert main([*args, "--output", str(out), "--resume"]) == 0
    assert out.read_bytes() == whole.read_bytes()
    assert not (tmp_path / f"out{suffix}.partial").exists()


def test_resume_refuses_a_partial_output_of_another_input(tmp_path, tiny_model_dir, capsys):
    src, _ = _corpus(tmp_path)
    args = [
        "encode",
        "-q",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(src),
        "--chunk-size",
        "4",
        "--output",
        str(tmp_path / "o.npy"),
    ]
    with interrupted_at_call(Text2TokenModel, "encode", 2):
        assert main(args) == 130
    src.write_text("a different corpus\nwith other lines\n")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the interrupted encode used another input file contents" in err  # names what changed
    assert "o.npy.partial and" in err and "o.npy.progress.json" in err  # and both files to delete


@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_resume_after_the_partial_output_was_deleted_is_refused_not_zeros(tmp_path, tiny_model_dir, capsys, suffix):
    """Following the old message ("delete it") left the progress file: a resume then wrote zeros for rows 0-7 of a
    .npy (exit 0) or died with a traceback for .jsonl. Now each step says exactly what to delete."""
    src, _ = _corpus(tmp_path)
    out = tmp_path / f"z{suffix}"
    args = [
        "encode",
        "-q",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(src),
        "--chunk-size",
        "4",
        "--output",
        str(out),
    ]
    with interrupted_at_call(Text2TokenModel, "encode", 3):
        assert main(args) == 130
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"z{suffix}.partial and" in err and f"z{suffix}.progress.json" in err and "delete them" in err
    (tmp_path / f"z{suffix}.partial").unlink()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no longer exists" in err and f"delete {tmp_path / f'z{suffix}.progress.json'}" in err
    assert "Traceback" not in err and not out.exists()
    (tmp_path / f"z{suffix}.progress.json").unlink()  # as told: then a plain run starts over and completes
    assert main(args) == 0
    if suffix == ".npy":
        assert np.abs(np.load(out)).sum(axis=1).min() > 0, "no row left as zeros"


def test_resume_refuses_a_truncated_partial_output(tmp_path, tiny_model_dir, capsys):
    src, _ = _corpus(tmp_path)
    out = tmp_path / "t.npy"
    args = [
        "encode",
        "-q",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(src),
        "--chunk-size",
        "4",
        "--output",
        str(out),
    ]
    with interrupted_at_call(Text2TokenModel, "encode", 3):
        assert main(args) == 130
    partial = tmp_path / "t.npy.partial"
    partial.write_bytes(partial.read_bytes()[:200])
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    assert "is not the" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow  # two processes under accelerate launch
@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_two_processes_write_the_bytes_one_process_writes(tmp_path, tiny_model_dir, suffix):
    """``accelerate launch`` with 2 CPU processes (gloo): each encodes its range of chunks, the output is one file in
    input order, byte-identical to the single-process output; no shard or progress file is left behind."""
    import os
    import subprocess

    src, texts = _corpus(tmp_path, ".jsonl")
    one, two = tmp_path / f"one{suffix}", tmp_path / f"two{suffix}"
    args = ["encode", "-q", "--model", str(tiny_model_dir), "--input", str(src), "--chunk-size", "3"]
    assert main([*args, "--output", str(one)]) == 0
    launch = accelerate_launch(*args, "--output", str(two))
    res = subprocess.run(launch, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert two.read_bytes() == one.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == [two.name]


@pytest.mark.parametrize("failing_write", [1, 2, 3])
def test_a_full_disk_mid_encode_is_one_line_and_resumes_to_the_same_bytes(
    tmp_path, tiny_model_dir, capsys, monkeypatch, failing_write
):
    """Fault injection: the disk fills up while the k-th chunk is written (ENOSPC from the writer itself). The
    command ends with one line (no traceback) that says to resume, nothing appears under the output's name, and
    --resume after space is freed gives the bytes of an uninterrupted run."""
    import errno

    from text2token.streaming import NpyFile

    src, _ = _corpus(tmp_path)
    args = ["encode", "-q", "--model", str(tiny_model_dir), "--input", str(src), "--chunk-size", "4"]
    whole = tmp_path / "whole.npy"
    assert main([*args, "--output", str(whole)]) == 0
    out = tmp_path / "out.npy"
    real_write, calls = NpyFile.write, []

    def full_disk(self, first, block):
        calls.append(first)
        if len(calls) == failing_write:
            self.fh.seek(self.data_start + first * self.width * self.dtype.itemsize)
            self.fh.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes()[:10])  # a few bytes got out
            raise OSError(errno.ENOSPC, "No space left on device", self.fh.name)
        return real_write(self, first, block)

    monkeypatch.setattr(NpyFile, "write", full_disk)
    capsys.readouterr()
    assert main([*args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert not out.exists()
    monkeypatch.setattr(NpyFile, "write", real_write)  # space freed
    assert main([*args, "--output", str(out), "--resume"]) == 0
    assert out.read_bytes() == whole.read_bytes()
