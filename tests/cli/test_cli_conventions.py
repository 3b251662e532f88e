"""The command line as a newcomer meets it: explicit --model, validated numbers, sentence-transformers
conventions (--device/--dtype/--quiet, stdin, --skip-blank, .npy/.jsonl/.parquet with ids), help with
descriptions and defaults, Ctrl-C as one line; and the Python API's ST conventions."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from text2token import Text2TokenModel
from text2token.cli import main
from text2token.cli.parser import build_parser


def test_model_is_required_and_an_untrained_one_is_named(tmp_path, tiny_model_dir, capsys):
    txt = tmp_path / "in.txt"
    txt.write_text("one\ntwo\n")
    with pytest.raises(SystemExit):
        main(["encode", "--input", str(txt), "--output", str(tmp_path / "o.npy")])
    assert "the following arguments are required: --model" in capsys.readouterr().err
    assert (
        main(["encode", "--model", str(tiny_model_dir), "--input", str(txt), "--output", str(tmp_path / "o.npy")]) == 0
    )
    assert "is an untrained backbone" in capsys.readouterr().err
    assert (
        main(["encode", "-q", "--model", str(tiny_model_dir), "--input", str(txt), "--output", str(tmp_path / "o.npy")])
        == 0
    )
    assert capsys.readouterr().err == "", "--quiet: nothing on stderr"


def test_a_mistyped_relative_path_is_an_error_not_a_hub_lookup(tmp_path, capsys, monkeypatch):
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--model", "runs/modle", "x"]) == 2
    assert "model path does not exist: runs/modle (runs/ holds: demo)" in capsys.readouterr().err
    # a name that could be a hub id: the hub is asked once (no download retries); offline or not, the answer is
    # one line that says it is not a local path — from_pretrained's own failure would read "cannot load model"
    assert main(["explain", "--model", "runz/model", "x"]) == 2
    err = capsys.readouterr().err
    assert "'runz/model' is not a local path" in err and len(err.strip().splitlines()) == 1
    assert "cannot load model" not in err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["explain", "--top-k", "49153", "x"], "larger than the model's vocabulary (49152 tokens)"),
        (["explain", "--top-k", "0", "x"], "--top-k must be >= 1"),
        (["encode", "--max-length", "0"], "--max-length must be >= 1"),
        (["encode", "--max-length", "3"], "--max-length must be >= 8"),
        (["encode", "--batch-size", "-2"], "--batch-size must be >= 1"),
        (["search", "--top", "-1"], "--top must be >= 1"),
        (["search", "--hybrid", "1.5"], "must be in [0, 1]"),
        (["analyze", "--directions", "50"], "--directions 50 is more than min(texts, hidden size) = 3"),
    ],
)
def test_numeric_options_are_validated(tmp_path, tiny_model_dir, capsys, argv, match):
    txt = tmp_path / "in.txt"
    txt.write_text("one text\ntwo texts\nthree texts\n")
    cmd, rest = argv[0], argv[1:]
    extra = {
        "explain": ["--model", str(tiny_model_dir)],
        "encode": ["--model", str(tiny_model_dir), "--input", str(txt), "--output", str(tmp_path / "o.npy")],
        "search": ["--index", str(tmp_path), "--query", "x"],
        "analyze": ["--model", str(tiny_model_dir), "--base", str(tiny_model_dir), "--input", str(txt)],
    }[cmd]
    try:
        code = main([cmd, *extra, *rest])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_stdin_skip_blank_and_output_formats_keep_ids(tmp_path, tiny_model_dir):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a7", "text": "first text"}\n{"text": "second"}\n\n{"id": 9, "text": "third one"}\n')
    base = ["encode", "-q", "--model", str(tiny_model_dir), "--input", str(src)]
    assert main([*base, "--output", str(tmp_path / "o.npy")]) == 2  # the blank line, without --skip-blank
    ref = None
    for suffix in (".npy", ".jsonl", ".parquet"):
        assert main([*base, "--skip-blank", "--output", str(tmp_path / f"o{suffix}")]) == 0
    ref = np.load(tmp_path / "o.npy")
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a7", "1", "9"]  # the input's ids, else the row number from 0
    np.testing.assert_array_equal(np.array([r["embedding"] for r in rows], dtype=np.float32), ref)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("id").to_pylist() == ["a7", "1", "9"]
    np.testing.assert_array_equal(np.array(table.column("embedding").to_pylist(), dtype=np.float32), ref)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "text2token",
            "encode",
            "-q",
            "--model",
            str(tiny_model_dir),
            "--input",
            "-",
            "--output",
            str(tmp_path / "s.npy"),
        ],
        input="first text\nsecond\nthird one\n",
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), ref, atol=1e-6)
    assert (
        main(
            [
                "explain",
                "-q",
                "--model",
                str(tiny_model_dir),
                "--input",
                str(src),
                "--skip-blank",
                "--top-k",
                "2",
                "--output",
                str(tmp_path / "x.jsonl"),
            ]
        )
        == 0
    )
    assert [json.loads(line)["id"] for line in (tmp_path / "x.jsonl").read_text().splitlines()] == ["a7", "1", "9"]


def test_every_command_and_option_has_help_and_defaults_are_shown():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description and len(command.description) > 40, name
        text = " ".join(command.format_help().split())  # wrapped lines joined
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
                assert f"(default: {action.default})" in text or "(default" in (action.help or ""), (
                    f"{name} {action.option_strings}: default not shown"
                )


# The child interrupts itself the moment its start-up first imports transformers (an import hook sends SIGINT to
# its own process), so the Ctrl-C provably arrives while start-up is still running, on any machine.
_CTRL_C_AT_START_UP = """
import importlib.abc, os, signal, sys

# Ctrl-C as a terminal delivers it: Python's own SIGINT handler. (A parent that runs the tests as a background job
# hands SIGINT on ignored, and Python then leaves it ignored: the signal below would be lost.)
signal.signal(signal.SIGINT, signal.default_int_handler)

class CtrlCOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "transformers":
            sys.meta_path.remove(self)
            print("start-up: importing transformers", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCOnImport())
sys.argv = ["text2token", *sys.argv[1:]]
from text2token.cli import run
run()
"""


def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path, tiny_model_dir):
    txt = tmp_path / "in.txt"
    txt.write_text("one text to embed\n" * 3)
    out = tmp_path / "o.npy"
    args = ["encode", "--model", str(tiny_model_dir), "--input", str(txt), "--output", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _CTRL_C_AT_START_UP, *args], capture_output=True, text=True, timeout=120
    )
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "start-up: importing transformers", proc.stderr  # the signal was sent during start-up
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and lines[-1] == "text2token encode: interrupted"
    assert not out.exists()


def test_python_api_follows_sentence_transformers(tiny_model_dir):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    texts = ["a cat on a mat", "stock markets fell"]
    emb = model.encode(texts)
    t = model.encode(texts, convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), emb)
    sim = model.similarity(emb, emb)
    assert sim.shape == (2, 2) and torch.allclose(torch.diagonal(sim), torch.ones(2), atol=1e-5)
    assert sim[0, 1] == pytest.approx(
        float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1])), abs=1e-5
    )
    np.testing.assert_array_equal(model.encode(texts, prompt="query: "), model.encode(["query: " + x for x in texts]))
    np.testing.assert_array_equal(model.encode_query(texts), emb)  # no query prompt saved: plain encode
    model.prompts = {"query": "Represent the question: "}
    np.testing.assert_array_equal(model.encode_query(texts), model.encode(texts, prompt="Represent the question: "))
    np.testing.assert_array_equal(model.encode_document(texts), emb)
    from text2token.errors import Text2TokenError

    with pytest.raises(Text2TokenError, match="no prompt named 'document'.*prompts: query"):
        model.encode(texts, prompt_name="document")
