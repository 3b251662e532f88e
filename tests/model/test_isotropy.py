"""The isotropy correction (text2token.isotropy): what it computes, that it travels inside a saved folder to every
dense path (Python, CLI, sentence-transformers, mteb), leaves the vocabulary view alone, and refuses what it cannot
do in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import PROBE_TEXTS, with_correction
from sentence_transformers import SentenceTransformer

from text2token import Text2TokenModel
from text2token.cli import main
from text2token.errors import Text2TokenError
from text2token.isotropy import IsotropyCorrection, TooFewTexts
from text2token.layout import ISOTROPY_FILE

TEXTS = PROBE_TEXTS


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _anisotropic(n=400, hidden=32, seed=0):
    """Vectors sharing one large common direction plus a strong second one, as pooled LM states do."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, hidden, generator=g)
    x[:, 0] = x[:, 0] * 8 + 30  # a large mean and the largest variance on axis 0
    x[:, 1] *= 4
    return x


def test_the_correction_centres_and_removes_the_top_directions():
    x = _anisotropic()
    c = IsotropyCorrection.fit(x, 2, {"corpus": "synthetic"})
    y = c.apply(x)
    assert y.mean(0).abs().max() < 1e-3  # mean removed
    assert torch.allclose(c.directions @ c.directions.T, torch.eye(2), atol=1e-5)  # orthonormal
    assert (y @ c.directions.T).abs().max() < 1e-3  # nothing left along the removed directions
    assert abs(c.directions[0, 0]) > 0.99 and abs(c.directions[1, 1]) > 0.99  # the top two axes, largest first
    weight, bias = c.affine()
    assert torch.allclose(x @ weight.T + bias, y, atol=1e-3)  # the same map as Dense / exported graphs carry
    assert c.fitted_on == {"corpus": "synthetic", "directions": 2, "texts": 400}
    assert torch.allclose(IsotropyCorrection.fit(x, 0).apply(x), x - x.mean(0), atol=1e-4)  # D = 0: the mean only


def test_a_refit_on_the_same_vectors_is_the_same_correction():
    x = _anisotropic()
    a, b = IsotropyCorrection.fit(x, 3), IsotropyCorrection.fit(x.clone(), 3)
    assert a.fingerprint() == b.fingerprint()
    assert torch.equal(a.apply(x), b.apply(x))


def test_a_fit_with_too_few_texts_or_impossible_directions_is_one_clear_error():
    with pytest.raises(TooFewTexts, match="needs at least 100 texts to fit, got 50"):
        IsotropyCorrection.fit(_anisotropic(n=50), 1)
    with pytest.raises(Text2TokenError, match="between 0 and 31"):
        IsotropyCorrection.fit(_anisotropic(), 32)
    nan = _anisotropic()
    nan[3, 3] = float("nan")
    with pytest.raises(Text2TokenError, match="NaN"):
        IsotropyCorrection.fit(nan, 1)


def test_saved_correction_round_trips_and_a_damaged_file_is_named(tmp_path):
    c = IsotropyCorrection.fit(_anisotropic(), 2, {"corpus": "bundled:brown", "seed": 3})
    c.save(tmp_path)
    back = IsotropyCorrection.load(tmp_path, 32)
    assert back.fingerprint() == c.fingerprint() and back.fitted_on == c.fitted_on
    assert IsotropyCorrection.load(tmp_path / "nothing") is None
    with pytest.raises(Text2TokenError, match="fitted for 32-dimensional vectors, but this model's are 64"):
        IsotropyCorrection.load(tmp_path, 64)
    (tmp_path / ISOTROPY_FILE).write_bytes(b"not safetensors")
    with pytest.raises(Text2TokenError, match=f"{ISOTROPY_FILE} is damaged"):
        IsotropyCorrection.load(tmp_path, 32)


def test_a_corrected_folder_gives_the_same_vectors_in_python_st_and_mteb_and_keeps_explain(tmp_path, tiny_model_dir):
    from text2token.evaluation.mteb_runner import MTEBEncoder

    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="last", max_length=48, device="cpu")
    raw = model.encode(TEXTS, batch_size=2)
    explained = model.explain(TEXTS, top_k=5)
    with_correction(model)
    corrected = model.encode(TEXTS, batch_size=2)
    assert np.allclose(corrected, model.postprocess(torch.from_numpy(raw)).numpy(), atol=1e-5)
    assert np.allclose(model.encode(TEXTS, batch_size=3, postprocess=False), raw, atol=1e-5)
    assert not np.allclose(corrected, raw, atol=1e-3)
    assert model.explain(TEXTS, top_k=5) == explained  # the vocabulary view reads the raw pooled state
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    settings = json.loads((folder / "text2token_config.json").read_text())
    assert settings["isotropy"]["directions"] == 2 and settings["isotropy"]["corpus"] == "bundled:brown"
    assert "isotropy" in (folder / "README.md").read_text().lower()
    again = Text2TokenModel.from_pretrained(str(folder), device="cpu")
    assert again.correction is not None and again.correction.fingerprint() == model.correction.fingerprint()
    assert _cos(again.encode(TEXTS, batch_size=2), corrected).min() >= 0.9999
    st = SentenceTransformer(str(folder), device="cpu")  # the Dense module, no custom code
    assert _cos(st.encode(TEXTS, batch_size=2), corrected).min() >= 0.9999
    enc = MTEBEncoder(again, reuse_raw=True)
    assert enc.revision() != MTEBEncoder(Text2TokenModel.from_pretrained(str(tiny_model_dir), device="cpu")).revision()
    from torch.utils.data import DataLoader

    loader = DataLoader([{"text": t} for t in TEXTS], batch_size=2)
    got = enc.encode(loader, task_metadata=None, hf_split="test", hf_subset="default")
    assert _cos(got, corrected).min() >= 0.9999
    again.set_correction(None)  # the cached raw vectors, without the correction now
    assert _cos(enc.encode(loader, task_metadata=None, hf_split="test", hf_subset="default"), raw).min() >= 0.9999


def test_a_folder_without_a_correction_is_saved_as_before(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / ISOTROPY_FILE).exists() and not (tmp_path / "m" / "2_Dense").exists()
    assert "isotropy" not in json.loads((tmp_path / "m" / "text2token_config.json").read_text())
    assert Text2TokenModel.from_pretrained(str(tmp_path / "m"), device="cpu").correction is None


def test_fitting_reads_raw_vectors_so_a_refit_changes_nothing(tiny_model):
    first = with_correction(tiny_model).correction
    second = with_correction(tiny_model).correction  # fitted while the first one is set
    assert first.fingerprint() == second.fingerprint()


@pytest.mark.slow
def test_postprocess_cli_fits_refits_and_removes_in_place_and_makes_a_training_free_folder(
    tmp_path, tiny_model_dir, capsys
):
    folder = tmp_path / "free"
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"body": f"text number {i} about topic {i % 7}"}) + "\n" for i in range(130)))
    assert main(["postprocess", str(tiny_model_dir), "--output", str(folder), "--corpus", str(corpus),
                 "--field", "body", "--texts", "120", "--directions", "2", "-q"]) == 0  # fmt: skip
    assert "fitted the isotropy correction" in capsys.readouterr().out
    model = Text2TokenModel.from_pretrained(str(folder), device="cpu")
    assert model.correction.fitted_on["texts"] == 120 and model.correction.num_directions == 2
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(TEXTS[:3]) + "\n")
    assert (
        main(["encode", "--model", str(folder), "--input", str(texts), "--output", str(tmp_path / "e.npy"), "-q"]) == 0
    )
    assert _cos(np.load(tmp_path / "e.npy"), model.encode(TEXTS[:3])).min() >= 0.9999  # the CLI applies it too
    assert main(["postprocess", str(folder), "--corpus", str(corpus), "--field", "body", "--texts", "120",
                 "--directions", "2", "-q"]) == 0  # fmt: skip
    assert Text2TokenModel.from_pretrained(str(folder)).correction.fingerprint() == model.correction.fingerprint()
    assert main(["postprocess", str(folder), "--none"]) == 0
    assert Text2TokenModel.from_pretrained(str(folder)).correction is None
    assert not (folder / ISOTROPY_FILE).exists() and not (folder / "2_Dense").exists()
    capsys.readouterr()
    assert main(["postprocess", str(tiny_model_dir)]) == 2  # not a text2token folder: no in-place change
    assert "give --output DIR" in capsys.readouterr().err
    small = tmp_path / "small.txt"
    small.write_text("\n".join(f"line {i}" for i in range(40)) + "\n")
    assert main(["postprocess", str(folder), "--corpus", str(small), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs at least 100 texts to fit, got 40" in err
    assert main(["postprocess", str(folder), "--corpus", str(tmp_path / "missing.txt"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # the hint for invalid UTF-8 names an option postprocess has, and that option works
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"".join(b"caf\xe9 number %d\n" % i for i in range(120)))
    assert main(["postprocess", str(folder), "--corpus", str(latin), "--texts", "100", "-q"]) == 2
    assert "use --errors replace" in capsys.readouterr().err
    assert (
        main(["postprocess", str(folder), "--corpus", str(latin), "--texts", "100", "--errors", "replace", "-q"]) == 0
    )
    capsys.readouterr()
    assert main(["postprocess", str(folder), "--corpus", "bundled:nope", "-q"]) == 2
    err = capsys.readouterr().err
    assert "no bundled corpus 'nope'" in err and "data.train_file" not in err  # not a config key here


def test_a_correction_is_not_applied_to_vectors_of_other_settings(tmp_path, tiny_model_dir, caplog):
    model = with_correction(Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu"))
    model.save_pretrained(tmp_path / "m")
    assert Text2TokenModel.from_pretrained(str(tmp_path / "m"), max_length=32).correction is not None
    with caplog.at_level("WARNING", logger="text2token.model"):
        other = Text2TokenModel.from_pretrained(str(tmp_path / "m"), pooling="last")
    assert other.correction is None  # fitted on mean-pooled vectors: meaningless for last-token ones
    assert "fitted with its own pooling" in caplog.text and "text2token postprocess" in caplog.text


def test_a_baseline_refit_repeats_the_recorded_recipe_or_says_why_it_cannot(tmp_path, tiny_model_dir):
    from text2token.training.isotropy_fit import fit_on_corpus, refit_like

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"sentence {i} on subject {i % 9}" for i in range(150)) + "\n")
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    fitted = fit_on_corpus(model, str(corpus), texts=120, directions=1, seed=4, show_progress_bar=False)
    other = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu")
    assert refit_like(other, fitted.fitted_on).fingerprint() == fitted.fingerprint()  # same model, same recipe
    corpus.write_text(corpus.read_text() + "one more line\n")
    with pytest.raises(Text2TokenError, match="has changed since the correction was fitted"):
        refit_like(other, fitted.fitted_on)
    corpus.unlink()
    with pytest.raises(Text2TokenError, match="does not exist"):
        refit_like(other, fitted.fitted_on)
