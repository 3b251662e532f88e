"""The post-hoc filter that projects the LM head's dominant directions out of embeddings (text2token.directions)."""

import numpy as np
import pytest
import torch

from text2token.directions import head_directions, remove_directions
from text2token.errors import Text2TokenError


def test_head_directions_are_the_top_right_singular_vectors():
    torch.manual_seed(0)
    w = torch.randn(500, 32) + 3 * torch.randn(500, 1) @ torch.randn(1, 32)  # one strong shared direction
    u = head_directions(w, 3)
    assert u.shape == (3, 32)
    assert torch.allclose(u @ u.T, torch.eye(3), atol=1e-4)
    top = torch.linalg.svd(w, full_matrices=False).Vh[:3]
    assert torch.allclose((u @ top.T).abs(), torch.eye(3), atol=1e-3)  # the same vectors, up to sign
    with pytest.raises(Text2TokenError, match="between 1 and 31"):
        head_directions(w, 32)


def test_removed_directions_leave_no_component_and_keep_the_rest():
    torch.manual_seed(1)
    u = head_directions(torch.randn(200, 16), 2)
    e = torch.randn(7, 16)
    r = remove_directions(e, u)
    assert (r @ u.T).abs().max() < 1e-5
    assert torch.allclose(remove_directions(r, u), r, atol=1e-6)  # a projection: applying it twice changes nothing
    assert torch.allclose(r + (e @ u.T) @ u, e, atol=1e-5)


def test_encode_applies_the_filter_and_a_filtered_model_is_not_saved(tiny_model, tmp_path):
    texts = ["a cat sat on the mat", "stocks fell sharply", "the weather is fine"]
    plain = tiny_model.encode(texts)
    tiny_model.remove_head_directions(1)
    try:
        filtered = tiny_model.encode(texts)
        u = tiny_model.removed_directions.numpy()
        assert np.abs(filtered @ u.T).max() < 1e-4
        np.testing.assert_allclose(filtered, plain - (plain @ u.T) @ u, atol=1e-4)
        with pytest.raises(Text2TokenError, match="remove_head_directions"):
            tiny_model.save_pretrained(tmp_path / "m")
        assert not (tmp_path / "m").exists()
    finally:
        tiny_model.remove_head_directions(0)
    np.testing.assert_allclose(tiny_model.encode(texts), plain, atol=1e-6)


def test_eval_refuses_to_record_filtered_scores_in_the_model_card(tiny_model_dir, capsys):
    from text2token.cli import main

    assert main(["eval", "--model", str(tiny_model_dir), "--remove-directions", "1", "--card"]) == 2
    assert "--remove-directions" in capsys.readouterr().err
