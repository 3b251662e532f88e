"""Reliability: bad corpora, arbitrary Unicode, damaged or foreign caches and checkpoints, run locks,
non-finite losses, and determinism. (Kill-and-resume is in test_interrupt.py.)"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import SENTENCES, tiny_run_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from text2token import Text2TokenModel
from text2token.cli import main
from text2token.errors import Text2TokenError
from text2token.lock import LOCK_NAME, RunLock
from text2token.targets import DataDrivenTargetBuilder
from text2token.training import train
from text2token.training.checkpoint_model import load_checkpoint_model
from text2token.training.checkpoints import latest_checkpoint

# ---- arbitrary text never breaks target construction


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=200), min_size=1, max_size=6))
def test_any_unicode_gives_a_distribution_or_is_reported(tokenizer, texts):
    builder = DataDrivenTargetBuilder(tokenizer, max_length=64)
    targets, report = builder.build(texts)
    assert report.texts == len(texts) and report.kept + report.skipped_no_content == len(texts)
    kept = targets.text_index.tolist()
    assert kept == sorted(set(kept))
    for row in range(len(kept)):
        ids, weights = targets.get(row)
        assert len(ids) > 0 and abs(float(weights.sum()) - 1.0) < 1e-5
        assert (ids >= 0).all() and (ids < len(tokenizer)).all()
        assert not set(ids.tolist()) & set(tokenizer.all_special_ids)
    for i, text in enumerate(texts):  # skipped exactly when the text has no content token
        assert (i in kept) == bool(builder.token_ids(text))
    assert builder._per_word  # the fast per-word path is in use on this tokenizer ...
    assert builder._ids_by_word(texts) == builder._ids_whole(texts)  # ... and equals whole-text tokenization
    short = DataDrivenTargetBuilder(tokenizer, max_length=5)  # truncation inside and between words
    assert short._ids_by_word(texts) == short._ids_whole(texts)


# ---- corpus problems in `text2token train`


def _train_args(tmp_path, model_dir, corpus, *extra):
    return [
        "train",
        "--output",
        str(tmp_path / "run"),
        "stages=[data]",
        f"model.name={model_dir}",
        f"data.train_file={corpus}",
        "model.pooling=mean",
        "training.batch_size=4",
        "training.max_length=16",
        "stage1.steps=1",
        "lora.r=4",
        *extra,
    ]


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("c.txt", b"", "c.txt: file holds no texts (empty)"),
        ("c.txt", b"\n  \n\t\n", "c.txt: file holds no texts (only blank lines)"),
        ("c.txt", b"one good line\ntwo\n\xc3\x28 broken\n", "c.txt:3: invalid UTF-8"),
        ("c.jsonl", b'{"text": "fine"}\n{"text": ["a"]}\n', "c.jsonl:2: field 'text' must be a string"),
        ("c.jsonl", b'{"text": "fine"}\n{"txt": "b"}\n', "c.jsonl:2: missing field 'text' (fields: txt)"),
        ("c.jsonl", b'{"text": "fine"}\n{"text": "b"\n', "c.jsonl:2: not valid JSON"),
    ],
)
def test_bad_corpus_is_one_clear_line(tmp_path, tiny_model_dir, capsys, name, content, match):
    corpus = tmp_path / name
    corpus.write_bytes(content)
    assert main(_train_args(tmp_path, tiny_model_dir, corpus)) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_blank_invalid_and_long_lines_are_handled_and_counted(tmp_path, tiny_model_dir, capsys):
    lines = [s.encode() for s in SENTENCES[:6]] + [
        b"",
        b"   ",
        b"caf\xe9 au lait with friends",
        (" ".join(["word"] * 80)).encode(),
    ]
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    assert main(_train_args(tmp_path, tiny_model_dir, corpus)) == 2  # strict by default
    assert "c.txt:9: invalid UTF-8" in capsys.readouterr().err
    assert main(_train_args(tmp_path, tiny_model_dir, corpus, "--errors", "replace")) == 0
    report = json.loads((tmp_path / "run" / "stage1-data" / "data_report.json").read_text())
    assert report["blank_lines_skipped"] == 2 and report["invalid_utf8_lines_replaced"] == 1
    assert report["lines"] == report["used"] == 8
    assert report["texts_truncated_to_max_length"] == 1  # the 80-word line, truncated to 16 tokens


def test_encode_errors_replace_and_truncation_notes(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes(b"plain\nbad \xff byte\n" + (" ".join(["long"] * 300)).encode() + b"\n")
    out = tmp_path / "o.npy"
    assert main(["encode", "--model", str(tiny_model_dir), "--input", str(src), "--output", str(out)]) == 2
    assert "in.txt:2: invalid UTF-8" in capsys.readouterr().err and not out.exists()
    assert (
        main(
            [
                "encode",
                "--model",
                str(tiny_model_dir),
                "--input",
                str(src),
                "--output",
                str(out),
                "--errors",
                "replace",
                "--max-length",
                "64",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "1 lines of" in err and "1 of 3 texts are longer than 64 tokens" in err
    assert np.load(out).shape[0] == 3


# ---- caches and checkpoints that belong to something else, or are damaged


def test_foreign_targets_and_model_are_refused_with_the_fix(tmp_path, tiny_model_dir, tokenizer):
    import shutil

    from helpers import make_tiny_model

    from text2token.errors import ConfigError

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    corpus = tmp_path / "corpus.txt"
    train(tiny_run_config(tmp_path, model, "stage1.steps=2"))  # continued below with 3 steps: the targets are read
    # the corpus file changed under the same name: the cached targets' fingerprint says so
    changed = "\n".join(reversed(SENTENCES)) + "\nOne more line about rivers.\n"
    with pytest.raises(
        Text2TokenError,
        match="targets.safetensors: cached targets were built for different settings "
        "\\(corpus.*delete the file to rebuild",
    ):
        train(_resume_with_corpus(tmp_path, model, changed), resume=True)
    # another model named in the config: refused by the run's recorded config, before anything is written
    other_model = make_tiny_model(tmp_path / "other-model", tokenizer, seed=3)
    with pytest.raises(ConfigError, match="model.name: .* → .*other-model.*another --output"):
        train(tiny_run_config(tmp_path, other_model, "stage1.steps=3"), resume=True)
    # other weights under the same model path: the stage folder's weight fingerprint says so
    shutil.rmtree(model)
    shutil.copytree(other_model, model)
    with pytest.raises(Text2TokenError, match="stage1-data was started from another model.*choose another --output"):
        train(tiny_run_config(tmp_path, model, "stage1.steps=3"), resume=True)
    assert corpus.is_file()


def _resume_with_corpus(tmp_path, model, content):
    cfg = tiny_run_config(tmp_path, model, "stage1.steps=3")  # writes the usual corpus ...
    (tmp_path / "corpus.txt").write_text(content)  # ... then it changes under the same name
    return cfg


def test_damaged_checkpoints_are_skipped_and_named(tmp_path, tiny_model_dir):
    train(
        tiny_run_config(
            tmp_path, tiny_model_dir, "stage1.steps=6", "training.save_every=2", "training.keep_checkpoints=5"
        )
    )
    stage = tmp_path / "run" / "stage1-data"
    assert latest_checkpoint(stage).name == "checkpoint-0000006"
    newest = stage / "checkpoints" / "checkpoint-0000006" / "adapter.safetensors"
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the weights: same size, different checksum
    newest.write_bytes(bytes(data))
    (stage / "checkpoints" / ".tmp-checkpoint-0000008.abc").mkdir()  # a write killed half-way
    assert latest_checkpoint(stage).name == "checkpoint-0000004"
    with pytest.raises(Text2TokenError, match="checkpoint-0000006 is damaged \\(adapter.safetensors does not match"):
        load_checkpoint_model(newest.parent)
    load_checkpoint_model(stage / "checkpoints" / "checkpoint-0000004")


# ---- one run per folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(Text2TokenError, match=f"in use by another run \\(pid \\d+ .*delete .*{LOCK_NAME}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()  # released
    import socket

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "x"}))
    with RunLock(tmp_path) as lock:  # the dead owner's lock is taken over: it now names this process
        assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    (tmp_path / LOCK_NAME).write_text("{half-writ")  # garbage: treated as stale
    RunLock(tmp_path).acquire().release()


@pytest.mark.slow
def test_second_training_on_the_same_folder_refuses(tmp_path, tiny_model_dir, capsys):
    from helpers import training_command, wait_for_steps

    run = tmp_path / "run"
    proc = subprocess.Popen(
        training_command(tmp_path, tiny_model_dir, run, 5000), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_steps(run / "stage1-data" / "train_log.jsonl", 1, proc)
        corpus = tmp_path / "corpus.txt"
        assert (
            main(
                [
                    "train",
                    "--output",
                    str(run),
                    "--resume",
                    "stages=[data]",
                    f"model.name={tiny_model_dir}",
                    f"data.train_file={corpus}",
                    "model.pooling=mean",
                ]
            )
            == 2
        )
        assert f"in use by another run (pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    assert (run / LOCK_NAME).exists()  # kill -9 leaves the lock behind; it is stale now
    RunLock(run).acquire().release()


# ---- numerics


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_model_dir, capsys):
    """With an absurd learning rate the run blows up at some step N (which N depends on the CPU): a non-finite loss,
    or an update that made the weights non-finite. Training stops there with one error line naming N, the
    checkpoint of step N-1 is intact and finite, no model is saved."""
    args = _train_args(
        tmp_path,
        tiny_model_dir,
        tmp_path / "c.txt",
        "stage1.lr=1e30",
        "stage1.steps=6",
        "training.save_every=1",
        "training.grad_clip=0",
    )
    (tmp_path / "c.txt").write_text("\n".join(SENTENCES) + "\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    found = re.search(r"(loss is (nan|-?inf)|weights became non-finite) at stage 1 \(data-driven\) step (\d+)", err)
    assert found, err
    step = int(found.group(3))
    assert 2 <= step <= 6  # step 1 starts from the base model: finite loss, finite weights after one update
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "lower learning rate" in errors[0] and "Traceback" not in err
    assert err.rstrip().endswith(errors[0])  # the progress bar is closed before the message
    ckpt = latest_checkpoint(tmp_path / "run" / "stage1-data")
    assert ckpt.name == f"checkpoint-{step - 1:07d}", "nothing is written after the bad step"
    assert all(torch.isfinite(t).all() for t in load_file(str(ckpt / "adapter.safetensors")).values())
    assert not (tmp_path / "run" / "model").exists()


def test_lm_head_runs_in_fp32_where_half_precision_overflows(tiny_model_dir):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu", dtype=torch.float16)
    with torch.no_grad():
        model.lm_head.weight[7].fill_(1.0)  # one row whose logit is sum(pooled)
    pooled = torch.full((2, model.backbone.config.hidden_size), 6e4, dtype=torch.float16)
    assert torch.isinf(model.lm_head(pooled)).any()  # what a half-precision head would give
    logits = model.vocab_logits(pooled)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert logits[0, 7].item() == pytest.approx(6e4 * model.backbone.config.hidden_size, rel=1e-3)


# ---- determinism


def test_same_seed_same_config_gives_identical_targets_weights_and_embeddings(tmp_path, tiny_model_dir):
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        train(
            tiny_run_config(tmp_path / name, tiny_model_dir, "stage1.steps=4", "lora.dropout=0.1"),
            show_progress_bar=False,
        )
        runs.append(tmp_path / name / "run")
    a, b = runs
    assert (a / "stage1-data" / "targets.safetensors").read_bytes() == (
        b / "stage1-data" / "targets.safetensors"
    ).read_bytes()
    wa, wb = (load_file(str(r / "stage1-data" / "adapter_final.safetensors")) for r in runs)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # bitwise
    ea, eb = (Text2TokenModel.from_pretrained(str(r / "model"), device="cpu").encode(SENTENCES[:8]) for r in runs)
    assert np.array_equal(ea, eb)


@pytest.mark.parametrize(
    "pooling,attention",
    [("mean", "causal"), ("last", "causal"), ("mean", "bidirectional"), ("weighted_mean", "causal")],
)
def test_encoding_does_not_depend_on_batch_size(tiny_model_dir, pooling, attention):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling=pooling, attention=attention, device="cpu")
    texts = [s[: 7 + 5 * i] for i, s in enumerate(SENTENCES[:8])] + ["x", "a much longer text " * 6]
    ref = model.encode(texts, batch_size=1, normalize_embeddings=True)
    for bs in (3, 10):
        got = model.encode(texts, batch_size=bs, normalize_embeddings=True)
        assert (got * ref).sum(axis=1).min() >= 1 - 1e-5


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_streaming_corpus_reader_equals_reading_the_whole_file(tmp_path, suffix):
    import hashlib

    from text2token.textio import read_texts_counted
    from text2token.training.corpus import read_corpus

    texts = [f"text number {i} with ünïcode {'x' * (i % 7)}" for i in range(300)]
    lines = [json.dumps({"text": t}, ensure_ascii=False) if suffix == ".jsonl" else t for t in texts]
    lines[0] = "\ufeff" + lines[0]
    lines[5] += "\r"
    lines.insert(9, "   ")
    path = tmp_path / f"c{suffix}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got, info = read_corpus(path, "text", seed=3, limit=120)
    everything, counts = read_texts_counted(path, skip_blank=True)
    assert everything == texts and counts["blank_lines_skipped"] == 1
    order = np.random.default_rng(3).permutation(len(texts))[:120]
    assert got == [texts[i] for i in order]
    assert info["sha256_16"] == hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    assert info["lines"] == 300 and info["used"] == 120 and info["blank_lines_skipped"] == 1


def test_importing_text2token_limits_openmp_spinning_unless_told_otherwise():
    """Two jobs on the same cores share them instead of spinning against each other (benchmarks/contention.py):
    text2token sets a short spin count before torch loads OpenMP, and keeps a policy or count the user chose."""
    probe = (
        "import os, text2token.cli, torch; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def seen(**extra):
        return subprocess.run(
            [sys.executable, "-c", probe], env={**env, **extra}, capture_output=True, text=True, check=True
        ).stdout.split()

    assert seen() == ["10000", "None"]
    assert seen(GOMP_SPINCOUNT="500") == ["500", "None"]
    assert seen(OMP_WAIT_POLICY="ACTIVE") == ["None", "ACTIVE"]  # a policy chosen by the user is not overridden


# A child that runs the CLI and kills itself (SIGKILL: no handler, no cleanup) at a point chosen by a seed: while the
# k-th batch is computed, right after the k-th block of rows is written, or just before the k-th progress record.
_KILLED_AT_A_RANDOM_POINT = """
import os, random, signal, sys

seed, command = int(sys.argv[1]), sys.argv[2]
rng = random.Random(seed)
where, k = rng.choice(["compute", "rows", "progress"]), rng.randint(2, 6)
import text2token.model, text2token.resumable, text2token.streaming
import text2token.retrieval.build as build

def kill_at(owner, name, after):
    real, calls = getattr(owner, name), []
    def wrapped(*a, **kw):
        calls.append(1)
        if len(calls) == k and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **kw)
        if len(calls) == k and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(owner, name, wrapped)

if where == "compute":
    kill_at(text2token.model.Text2TokenModel, "vocab_logits" if command == "index" else "encode", after=False)
elif where == "rows":
    kill_at(text2token.resumable.NpyFile, "write", after=True)
else:
    kill_at(build if command == "index" else text2token.streaming, "write_json_atomic", after=False)
print(where, k, file=sys.stderr, flush=True)
from text2token.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("command", ["encode", "index"])
def test_killed_at_a_random_point_then_resumed_gives_the_bytes_of_an_uninterrupted_run(
    tmp_path, tiny_model_dir, command, seed
):
    """Fault injection across seeds: encode or index SIGKILLed at a random point (mid-batch, right after a block of
    rows is written, or before its progress record), then --resume: the same bytes as a run never interrupted."""
    import subprocess
    import sys

    corpus = tmp_path / "docs.jsonl"
    texts = [f"{s} number {i}." for i, s in enumerate(SENTENCES * 3)]
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    io = ["--input", str(corpus)] if command == "encode" else ["--corpus", str(corpus), "--top-k", "16"]
    args = [command, "-q", "--model", str(tiny_model_dir), "--pooling", "mean", *io, "--chunk-size", "8"]
    suffix = ".npy" if command == "encode" else ""
    whole, out = tmp_path / f"whole{suffix}", tmp_path / f"out{suffix}"
    assert main([*args, "--output", str(whole)]) == 0
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AT_A_RANDOM_POINT, str(seed), *args, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, (child.returncode, child.stderr)  # killed where the seed said
    assert not out.exists()
    assert main([*args, "--output", str(out), "--resume"]) == 0, child.stderr
    if command == "encode":
        assert out.read_bytes() == whole.read_bytes(), child.stderr
        return
    for name in sorted(p.name for p in whole.iterdir()):
        if name == "index.json":
            a, b = (json.loads((d / name).read_text()) for d in (whole, out))
            for info in (a, b):
                del info["seconds"], info["generation"]
            assert a == b, child.stderr
        else:
            assert (out / name).read_bytes() == (whole / name).read_bytes(), (name, child.stderr)
