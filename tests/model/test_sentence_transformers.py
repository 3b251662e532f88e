"""Saved text2token folders are native sentence-transformers folders: same embeddings, no remote code,
loadable in mteb, with a model card."""

import json

import numpy as np
import pytest
from helpers import PROBE_TEXTS
from sentence_transformers import SentenceTransformer

from text2token import Text2TokenModel
from text2token.cli import main

TEXTS = PROBE_TEXTS


@pytest.mark.parametrize(
    "pooling,attention",
    [
        ("mean", "causal"),
        ("last", "causal"),
        ("weighted_mean", "causal"),
        ("mean", "bidirectional"),
        ("last", "bidirectional"),
    ],
)
def test_sentence_transformers_gives_the_same_embeddings(tmp_path, tiny_model_dir, pooling, attention):
    ours = Text2TokenModel.from_pretrained(
        str(tiny_model_dir), pooling=pooling, attention=attention, max_length=48, device="cpu"
    )
    folder = tmp_path / "model"
    ours.save_pretrained(folder)
    st = SentenceTransformer(str(folder), device="cpu")  # no trust_remote_code
    a = ours.encode(TEXTS, batch_size=2)
    b = st.encode(TEXTS, batch_size=2)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.9999, cos
    if attention == "bidirectional":
        assert json.loads((folder / "config.json").read_text())["is_causal"] is False


def test_folder_loads_in_mteb_and_carries_a_model_card(tmp_path, tiny_model_dir, capsys):
    import mteb
    from mteb.mocks.mock_tasks.sts import MockSTSTask

    ours = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="last", device="cpu")
    folder = tmp_path / "model"
    ours.save_pretrained(folder)
    card = (folder / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "pooling: `last`" in card and "Not evaluated yet" in card
    result = mteb.evaluate(
        SentenceTransformer(str(folder), device="cpu"), MockSTSTask(), cache=None, show_progress_bar=False
    )
    assert len(result.task_results) == 1
    assert main(["eval", "--model", str(folder), "--suite", "quick", "--card"]) == 0
    card = (folder / "README.md").read_text()
    assert "| RottenTomatoesClassification | Classification | accuracy |" in card and "**mean**" in card
    assert json.loads((folder / "text2token_config.json").read_text())["evaluation"]["suite"] == "quick"
