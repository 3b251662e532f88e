import numpy as np
import pytest

from text2token.errors import Text2TokenError
from text2token.targets import DataDrivenTargetBuilder, SparseTargets
from text2token.targets.data_driven import clean_text


def test_clean_text_drops_punctuation_symbols_underscores_and_stopwords():
    assert clean_text("The cats -- sadly!! -- were running_fast, weren't they?") == "cats sadly running fast weren t"
    assert clean_text("THE And oF") == ""
    assert clean_text("e-mail: foo@bar.com") == "e mail foo bar com"


def test_golden_targets_on_real_tokenizer(tokenizer):
    builder = DataDrivenTargetBuilder(tokenizer)
    ids = builder.token_ids("The cats, sadly, were running!!! The cats...")
    pieces = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    # stopwords ("The", "were") and punctuation gone; "cats" kept once (unique ids)
    assert pieces == ["cats", "Ġsadly", "Ġrunning", "Ġcats"]
    assert len(set(ids)) == len(ids)


def test_subword_pieces_are_all_kept(tokenizer):
    builder = DataDrivenTargetBuilder(tokenizer)
    word = "antidisestablishmentarianism"
    ids = builder.token_ids(word)
    assert len(ids) > 1, "a rare long word splits into several pieces, all kept"
    assert tokenizer.decode(ids).replace(" ", "") == word


def test_no_special_or_whitespace_tokens(tokenizer):
    builder = DataDrivenTargetBuilder(tokenizer)
    special = set(tokenizer.all_special_ids)
    text = f"{tokenizer.eos_token} hello\t\t   world {tokenizer.bos_token}\n\n  ok"
    ids = builder.token_ids(text)
    assert ids and not special & set(ids)
    assert all(tokenizer.decode([i]).strip() for i in ids)
    # the tokenizer's own special ids are never content, whatever they are
    assert not any(builder.is_content_token(i) for i in special)


def test_build_uniform_sums_to_one_and_skips_texts_without_content(tokenizer):
    builder = DataDrivenTargetBuilder(tokenizer)
    texts = ["Quantum physics explains atoms.", "the and of", "!!! ???", "Dogs bark loudly at night."]
    targets, report = builder.build(texts, batch_size=2)
    assert report.as_dict() == {"texts": 4, "kept": 2, "skipped_no_content": 2}
    assert targets.text_index.tolist() == [0, 3]
    for i in range(len(targets)):
        ids, w = targets.get(i)
        assert np.isclose(w.sum(), 1.0, atol=1e-6)
        assert np.allclose(w, 1.0 / len(ids))
    # sparse: bytes grow with tokens, not with the vocabulary size
    assert targets.nbytes < 200


def test_store_roundtrip_and_fingerprint_check(tmp_path, tokenizer):
    builder = DataDrivenTargetBuilder(tokenizer)
    targets, _ = builder.build(["Red apples grow on trees.", "Blue whales swim."])
    targets.fingerprint = builder.fingerprint()
    path = tmp_path / "t.safetensors"
    targets.save(path)
    loaded = SparseTargets.load(path, expect_fingerprint=builder.fingerprint())
    for a, b in zip(
        (targets.indptr, targets.ids, targets.weights, targets.text_index),
        (loaded.indptr, loaded.ids, loaded.weights, loaded.text_index),
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(Text2TokenError, match="max_length"):
        SparseTargets.load(path, expect_fingerprint={**builder.fingerprint(), "max_length": 7})
    ids, weights = loaded.batch([1, 0])
    assert ids.shape == weights.shape and weights.sum(dim=1).allclose(weights.new_ones(2))


def test_parallel_build_is_identical(tokenizer):
    from text2token.textio import read_texts
    from text2token.training.corpus import BUNDLED_CORPUS

    texts = read_texts(BUNDLED_CORPUS, skip_blank=True)[:3000] + ["", "the of and", "x" * 500]
    one, rep1 = DataDrivenTargetBuilder(tokenizer).build(texts, batch_size=512)
    two, rep2 = DataDrivenTargetBuilder(tokenizer).build(texts, batch_size=512, num_proc=2)
    assert rep1 == rep2 and rep1.skipped_no_content >= 2
    for name in ("indptr", "ids", "weights", "text_index"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.ids.dtype == np.int32 and one.weights.dtype == np.float32


def test_idf_weighting_puts_more_mass_on_rarer_tokens_and_sums_to_one(tokenizer):
    """``weighting="idf"``: the same ids as uniform, weights ∝ smoothed IDF over the texts built, summing to 1 per
    text; a token in every text weighs less than one in a single text; the cache fingerprint records the choice."""
    texts = ["zebra market", "market crash", "market rally", "quiet market"]
    uniform, _ = DataDrivenTargetBuilder(tokenizer).build(texts)
    idf_builder = DataDrivenTargetBuilder(tokenizer, weighting="idf")
    idf, _ = idf_builder.build(texts)
    assert np.array_equal(uniform.ids, idf.ids) and np.array_equal(uniform.indptr, idf.indptr)
    for i in range(len(texts)):
        ids, w = idf.get(i)
        assert w.sum() == pytest.approx(1.0, abs=1e-6)
    ids, w = idf.get(0)  # "zebra" (1 text) vs " market" (all 4 texts)
    market = tokenizer(" market", add_special_tokens=False)["input_ids"]
    assert len(market) == 1 and market[0] in ids
    common = w[list(ids).index(market[0])]
    assert all(x > common for i, x in zip(ids, w) if i != market[0])
    assert not np.allclose(idf.weights, uniform.weights)
    assert (
        idf_builder.fingerprint()["weighting"] == "idf" != DataDrivenTargetBuilder(tokenizer).fingerprint()["weighting"]
    )
    with pytest.raises(ValueError, match="weighting must be one of uniform, idf"):
        DataDrivenTargetBuilder(tokenizer, weighting="bm25")
