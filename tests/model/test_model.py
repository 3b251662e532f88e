import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from text2token import Text2TokenModel
from text2token.errors import ConfigError, ModelLoadError
from text2token.pooling import PROMPTEOL_TEMPLATE

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hi.",
    "A somewhat longer sentence about embeddings, language models and the tokens they predict.",
    "Short one",
]


def test_encode_shape_dtype_order_and_batch_size_independence(tiny_model):
    full = tiny_model.encode(TEXTS, batch_size=4)
    assert full.shape == (4, tiny_model.backbone.config.hidden_size) and full.dtype == np.float32
    singles = np.stack([tiny_model.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(full, singles, atol=1e-5)  # order preserved, padding ignored
    np.testing.assert_allclose(tiny_model.encode(TEXTS, batch_size=3), full, atol=1e-5)
    normed = tiny_model.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    assert tiny_model.encode("single").shape == (tiny_model.backbone.config.hidden_size,)


def test_encode_batches_by_token_length_across_windows(tiny_model, monkeypatch):
    """Batches hold texts of near-equal *token* length; rows come back in input order even when the
    texts are tokenized in several windows; padding matches the tokenizer's own."""
    texts = [("word " * n).strip() for n in (1, 30, 2, 29, 3, 28, 4, 27, 5)]
    whole = tiny_model.encode(texts, batch_size=2)
    batches = list(tiny_model._batches(texts, 2))
    lengths = [enc["attention_mask"].sum(1).tolist() for _, enc in batches]
    assert lengths[0] == sorted(lengths[0], reverse=True) and max(lengths[0]) >= max(lengths[-1])
    assert sorted(int(i) for idx, _ in batches for i in idx) == list(range(len(texts)))
    import text2token.model as model_module

    monkeypatch.setattr(model_module, "_ENCODE_WINDOW", 4)
    windowed = tiny_model.encode(texts, batch_size=2)  # 3 windows: 4 + 4 + 1 texts
    assert len(list(tiny_model._batches(texts, 2))) == model_module._num_batches(len(texts), 2) == 5
    np.testing.assert_allclose(windowed, whole, atol=1e-5)
    reference = tiny_model.tokenizer(
        texts[:3], padding=True, truncation=True, max_length=tiny_model.max_length, return_tensors="pt"
    )
    ours = tiny_model.tokenize(texts[:3])
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    assert torch.equal(ours["attention_mask"], reference["attention_mask"])


def test_prompteol_template_always_fits(tiny_model_dir):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="last", max_length=24, device="cpu")
    assert model.template == PROMPTEOL_TEMPLATE
    long_text = " ".join(["elephant"] * 200)
    enc = model.tokenize([long_text, "tiny"])
    suffix = model.tokenizer('" means in one word:"', add_special_tokens=False)["input_ids"]
    assert enc["input_ids"].shape[1] <= 24
    row = enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()
    assert row[-len(suffix) :] == suffix, "the template's end survives truncation"
    assert model.tokenizer.decode(row).startswith('This sentence : "elephant')


def test_save_load_identical_embeddings(tiny_model_dir, tmp_path):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="weighted_mean", device="cpu")
    before = model.encode(TEXTS)
    model.save_pretrained(tmp_path / "saved")
    settings = json.loads((tmp_path / "saved" / "text2token_config.json").read_text())
    assert settings["pooling"] == "weighted_mean" and settings["max_length"] == 256  # 512 capped by the 256 positions
    assert settings["provenance"]["backbone"] == str(tiny_model_dir)
    model.save_pretrained(tmp_path / "saved")  # overwriting an existing folder works
    again = Text2TokenModel.from_pretrained(str(tmp_path / "saved"), device="cpu")
    assert again.pooling == "weighted_mean"
    np.testing.assert_array_equal(again.encode(TEXTS), before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folders left behind"


def test_explain_returns_topk_probabilities(tiny_model):
    out = tiny_model.explain(["cats and dogs", "stock market"], top_k=3)
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    probs = [p for _, p in out[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_vocab_logits_in_fp32_even_for_bf16_backbone(tiny_model_dir):
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu", dtype=torch.bfloat16)
    enc = model.tokenize(["hello world"])
    pooled = model(enc["input_ids"], enc["attention_mask"])
    assert pooled.dtype == torch.bfloat16
    logits = model.vocab_logits(pooled * 1e3)  # would overflow bf16's precision, not fp32's
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_bad_settings_and_paths(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="pooling"):
        Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="max", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Text2TokenModel.from_pretrained(str(tmp_path / "nope"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        Text2TokenModel.from_pretrained(str(tmp_path / "empty"), device="cpu")


def test_iter_vocab_logits_rows_match_single_text_logits(tiny_model):
    texts = [("word " * n).strip() for n in (3, 17, 1, 9, 12)]
    seen = {}
    for idx, logits in tiny_model.iter_vocab_logits(texts, batch_size=2):
        assert logits.dtype == torch.float32 and logits.shape == (len(idx), tiny_model.lm_head.weight.shape[0])
        for row, vec in zip(idx, logits):
            assert int(row) not in seen
            seen[int(row)] = vec
    assert sorted(seen) == list(range(len(texts)))
    for i, text in enumerate(texts):
        with torch.inference_mode():
            single = tiny_model.vocab_logits(torch.as_tensor(tiny_model.encode([text], convert_to_numpy=False)))
        torch.testing.assert_close(seen[i], single[0], atol=1e-4, rtol=1e-4)


def test_texts_without_tokens_are_an_error_not_a_zero_vector(tiny_model):
    from text2token.errors import Text2TokenError

    assert tiny_model.template is None and tiny_model.tokenizer("")["input_ids"] == []
    for texts in ([""], ["hello", ""]):
        with pytest.raises(Text2TokenError, match=r"give no tokens \(position\(s\) \d of \d\)"):
            tiny_model.encode(texts)
    assert tiny_model.encode([]).shape == (0, tiny_model.backbone.config.hidden_size)


def test_top_k_beyond_the_vocabulary_is_a_clear_error_everywhere(tiny_model):
    import pytest

    from text2token.errors import Text2TokenError
    from text2token.retrieval import sparse_vectors

    too_many = tiny_model.lm_head.weight.shape[0] + 1
    for call in (
        lambda: tiny_model.explain(["a text"], top_k=too_many),
        lambda: tiny_model.compare("a text", "another", top_k=too_many),
        lambda: sparse_vectors(tiny_model, ["a text"], top_k=too_many),
        lambda: tiny_model.explain(["a text"], top_k=0),
    ):
        with pytest.raises(Text2TokenError, match="larger than the model's vocabulary|below 1"):
            call()


def test_encoding_length_defaults_to_512_capped_by_the_context(tiny_model_dir, tmp_path, capsys):
    from text2token.cli import main
    from text2token.model import encoding_max_length

    long_context, short_context = (
        SimpleNamespace(max_position_embeddings=8192),
        SimpleNamespace(max_position_embeddings=256),
    )
    assert encoding_max_length(long_context, None) == 512 and encoding_max_length(short_context, None) == 256
    assert encoding_max_length(long_context, 1024) == 1024
    with pytest.raises(ConfigError, match="beyond the backbone's context \\(256 positions\\)"):
        encoding_max_length(short_context, 300)
    (tmp_path / "in.txt").write_text("a text\n")
    assert (
        main(
            [
                "encode",
                "--model",
                str(tiny_model_dir),
                "--max-length",
                "4096",
                "--output",
                str(tmp_path / "o.npy"),
                "--input",
                str(tmp_path / "in.txt"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "o.npy").exists()
    err = capsys.readouterr().err
    assert "max_length 4096 is beyond the backbone's context (256 positions)" in err and "Traceback" not in err


def test_loading_bfloat16_weights_on_a_cpu_without_native_bf16_warns_once(tiny_model_dir, caplog, monkeypatch):
    """The warning lives in the loader, so the Python API, the CLI and the server all give it (once a process)."""
    monkeypatch.setattr("text2token.devices.native_bf16", lambda device: False)
    monkeypatch.setattr("text2token.devices._warned_emulated_bf16", False)
    with caplog.at_level(logging.WARNING, logger="text2token"):
        Text2TokenModel.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.float32)
        assert "native bf16" not in caplog.text
        Text2TokenModel.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16)
        assert caplog.text.count("without native bf16") == 1
        Text2TokenModel.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16)
        assert caplog.text.count("without native bf16") == 1
