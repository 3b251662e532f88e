import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from text2token.cli import main


def test_encode_txt_and_jsonl_end_to_end(tmp_path, tiny_model_dir, capsys):
    txt = tmp_path / "in.txt"
    txt.write_text("first text\nsecond, longer text here\nthird\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert (
        main(
            [
                "encode",
                "--model",
                str(tiny_model_dir),
                "--input",
                str(txt),
                "--output",
                str(out),
                "--normalize",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    emb = np.load(out)
    assert emb.shape == (3, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    jl = tmp_path / "in.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps({"text": t, "id": i}) for i, t in enumerate(["first text", "second, longer text here", "third"])
        )
        + "\n"
    )
    out2 = tmp_path / "emb2.npy"
    assert (
        main(["encode", "--model", str(tiny_model_dir), "--input", str(jl), "--output", str(out2), "--normalize"]) == 0
    )
    np.testing.assert_allclose(np.load(out2), emb, atol=1e-5)


def test_explain_prints_tokens(tiny_model_dir, capsys):
    assert main(["explain", "--model", str(tiny_model_dir), "--top-k", "3", "--json", "cats and dogs"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["text"] == "cats and dogs" and len(row["tokens"]) == 3


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "in.txt: file does not exist"),
        (b"", "in.txt: file holds no texts"),
        (b"good line\n   \nanother\n", "in.txt:2: empty or whitespace-only line"),
        (b"ok\n\xff\xfe bad\n", "in.txt:2: invalid UTF-8"),
    ],
)
def test_encode_bad_text_files(tmp_path, tiny_model_dir, capsys, content, match):
    path = tmp_path / "in.txt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "o.npy"
    assert main(["encode", "--model", str(tiny_model_dir), "--input", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "lines,match",
    [
        (['{"text": "a"}', "{not json"], "in.jsonl:2: not valid JSON"),
        (['{"text": "a"}', '{"body": "b"}'], "in.jsonl:2: missing field 'text' (fields: body)"),
        (['{"text": 5}'], "in.jsonl:1: field 'text' must be a string"),
        (['["a"]'], "in.jsonl:1: expected a JSON object"),
        (['{"text": "  "}'], "in.jsonl:1: field 'text' is empty"),
    ],
)
def test_encode_bad_jsonl(tmp_path, tiny_model_dir, capsys, lines, match):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert (
        main(["encode", "--model", str(tiny_model_dir), "--input", str(path), "--output", str(tmp_path / "o.npy")]) == 2
    )
    assert match in capsys.readouterr().err


def test_bad_models(tmp_path, capsys, tokenizer):
    from transformers import LlamaConfig, LlamaModel, ViTConfig, ViTModel

    txt = tmp_path / "in.txt"
    txt.write_text("hello\n")
    assert (
        main(["encode", "--model", str(tmp_path / "missing"), "--input", str(txt), "--output", str(tmp_path / "o.npy")])
        == 2
    )
    assert "model path does not exist" in capsys.readouterr().err
    # a trunk saved without its (untied) LM head
    trunk = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            tie_word_embeddings=False,
        )
    )
    trunk.save_pretrained(tmp_path / "trunk")
    tokenizer.save_pretrained(tmp_path / "trunk")
    assert main(["explain", "--model", str(tmp_path / "trunk"), "x"]) == 2
    assert "has no trained LM head" in capsys.readouterr().err
    # not a causal LM family at all
    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "vit")
    assert main(["explain", "--model", str(tmp_path / "vit"), "x"]) == 2
    assert "not a causal language model" in capsys.readouterr().err


def test_train_bad_config_is_one_line(tmp_path, capsys):
    assert main(["train", "training.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'training.stepz'" in err and len(err.strip().splitlines()) == 1


def test_print_config_and_console_script(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "text2token.cli", "train", "--print-config", "training.steps=5"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "steps: 5" in res.stdout
    res = subprocess.run([sys.executable, "-m", "text2token.cli", "--help"], capture_output=True, text=True, check=True)
    assert "encode" in res.stdout and "explain" in res.stdout


def test_hub_ids_take_the_hub_path_and_fail_clearly_offline(tmp_path):
    from text2token.backbone import resolve_model_path

    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model_path("gpt2") == "gpt2"
    res = subprocess.run(
        [sys.executable, "-m", "text2token.cli", "explain", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "x"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert res.returncode == 2
    assert "cannot load model 'HuggingFaceTB/SmolLM2-135M-Instruct'" in res.stderr and "Traceback" not in res.stderr


def test_explain_input_file_and_compare(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "cats and dogs"}\n{"text": "stock markets"}\n')
    out = tmp_path / "ex.jsonl"
    assert (
        main(["explain", "--model", str(tiny_model_dir), "--input", str(src), "--output", str(out), "--top-k", "4"])
        == 0
    )
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["cats and dogs", "stock markets"] and all(len(r["tokens"]) == 4 for r in rows)
    capsys.readouterr()
    assert (
        main(["explain", "--model", str(tiny_model_dir), "--compare", "--json", "--top-k", "5", "a cat", "a kitten"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    from text2token import Text2TokenModel

    emb = Text2TokenModel.from_pretrained(str(tiny_model_dir), device="cpu").encode(
        ["a cat", "a kitten"], normalize_embeddings=True
    )
    assert res["cosine"] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-5)  # the cosine of the two embeddings
    assert res["overlap"] > 0 and len(res["tokens"]) == 5
    shares = [t["share"] for t in res["tokens"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-6
    t = res["tokens"][0]
    assert t["p_a"] * t["p_b"] == pytest.approx(t["share"] * res["overlap"], rel=1e-4)
    assert main(["explain", "--model", str(tiny_model_dir), "--compare", "only one"]) == 2
    assert "exactly two" in capsys.readouterr().err


@pytest.mark.parametrize("device, match", [("gpu0", "'gpu0' is not a torch device"), ("cuda:99", "cuda:99")])
def test_a_device_this_machine_lacks_is_one_line(tiny_model_dir, capsys, device, match):
    import torch

    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(SystemExit) as exc:
        main(["explain", "--model", str(tiny_model_dir), "--device", device, "hello"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse's usage, then one error line
    assert last.startswith("text2token explain: error: argument --device:") and match in last
    assert "Traceback" not in err


def test_plain_cuda_without_cuda_is_one_line(tiny_model_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        main(["encode", "--model", str(tiny_model_dir), "--device", "cuda", "--input", "-", "--output", "x.npy"])
    assert "this machine cannot run CUDA" in capsys.readouterr().err


def test_resume_of_a_folder_without_a_run_is_an_error_naming_it(tmp_path, capsys):
    """A typo in --output with --resume (and no --config) once trained a new model from the built-in defaults."""
    (tmp_path / "runs").mkdir()
    assert main(["train", "--output", str(tmp_path / "runs" / "my-rnu"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds no run" in err and "my-rnu" in err and "no such folder" in err
    assert not (tmp_path / "runs" / "my-rnu").exists()


@pytest.mark.parametrize(
    "name, content", [("in.json", '[{"text": "a"}, {"text": "b"}]\n'), ("in.csv", 'id,text\n1,"hello, world"\n')]
)
def test_json_and_csv_inputs_are_refused_not_read_as_lines(tmp_path, tiny_model_dir, capsys, name, content):
    """A JSON array or CSV rows were read silently as lines of text (the raw JSON became one 'text')."""
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / "o.npy"
    assert main(["encode", "--model", str(tiny_model_dir), "--input", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("text2token encode: error:") and name in err and "give a .jsonl file" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_encode_creates_the_output_folder_and_refuses_a_file_in_its_place(tmp_path, tiny_model_dir, capsys):
    texts = tmp_path / "in.txt"
    texts.write_text("one\ntwo\n")
    for out in (tmp_path / "new" / "deeper" / "e.npy", tmp_path / "new2" / "e.jsonl"):
        assert main(["encode", "--model", str(tiny_model_dir), "--input", str(texts), "--output", str(out), "-q"]) == 0
        assert out.is_file()
    (tmp_path / "afile").write_text("x")
    assert (
        main(
            [
                "encode",
                "--model",
                str(tiny_model_dir),
                "--input",
                str(texts),
                "--output",
                str(tmp_path / "afile" / "e.npy"),
            ]
        )
        == 2
    )
    assert "a file stands where its folder should be" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "config"])
def test_a_damaged_model_folder_is_one_line_naming_the_file(tmp_path, tiny_model_dir, capsys, damage):
    import shutil

    from text2token import Text2TokenModel

    folder = tmp_path / "m"
    Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu").save_pretrained(folder)
    weights, config = folder / "model.safetensors", folder / "text2token_config.json"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "garbage":
        weights.write_bytes(b"\x00garbage" * 64)
    else:
        config.write_text(config.read_text()[:30])
    assert main(["explain", "--model", str(folder), "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert ("text2token_config.json is damaged" if damage == "config" else "model.safetensors is damaged") in err
    shutil.rmtree(folder)


def test_encode_refuses_to_overwrite_its_input(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "texts.jsonl"
    src.write_text('{"text": "one"}\n')
    assert main(["encode", "--model", str(tiny_model_dir), "--input", str(src), "--output", str(src)]) == 2
    assert "is the input file" in capsys.readouterr().err and src.read_text() == '{"text": "one"}\n'


def test_saved_model_and_checkpoint_files_follow_the_umask_not_0600(tmp_path, tiny_model_dir):
    import os
    import stat

    from text2token import Text2TokenModel

    old = os.umask(0o022)
    try:
        Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu").save_pretrained(
            tmp_path / "m"
        )
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_an_unknown_suite_is_refused_before_any_model_is_loaded(tmp_path, capsys):
    """The suite name is checked first: a typo in --suite once cost a model load before its one-line error."""
    assert main(["eval", "--model", str(tmp_path / "no-model-here"), "--suite", "devv"]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'devv'" in err and "dev" in err and "no-model-here" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_on_a_cpu_without_native_bf16_gets_a_warning(tiny_model_dir, caplog, monkeypatch, native):
    # One machine has native bf16 or not; the probe is patched to each answer so both branches run everywhere.
    monkeypatch.setattr("text2token.devices.native_bf16", lambda device: native)
    monkeypatch.setattr("text2token.devices._warned_emulated_bf16", False)
    args = ["explain", "--model", str(tiny_model_dir), "--device", "cpu", "--top-k", "2", "--json"]
    with caplog.at_level(logging.WARNING, logger="text2token"):
        assert main([*args, "--dtype", "float32", "hello"]) == 0
        assert "native bf16" not in caplog.text
        assert main([*args, "--dtype", "bfloat16", "hello"]) == 0
        assert ("without native bf16" in caplog.text) is (not native)
