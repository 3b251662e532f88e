import pytest
import torch

from text2token.attention import probe_first_token_sensitivity, set_attention


def _first_hidden(model, ids, mask=None):
    with torch.no_grad():
        return model.trunk(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]


@pytest.mark.parametrize("with_padding", [False, True])
def test_later_token_changes_earlier_state_only_when_bidirectional(tiny_model, with_padding):
    ids_a = torch.tensor([[100, 200, 300, 400, 0]])
    ids_b = ids_a.clone()
    ids_b[0, 3] = 999  # change a *later* token
    mask = torch.tensor([[1, 1, 1, 1, 0]]) if with_padding else torch.ones_like(ids_a)
    set_attention(tiny_model.backbone, "causal")
    assert torch.allclose(_first_hidden(tiny_model, ids_a, mask), _first_hidden(tiny_model, ids_b, mask), atol=1e-6)
    set_attention(tiny_model.backbone, "bidirectional")
    diff = (_first_hidden(tiny_model, ids_a, mask) - _first_hidden(tiny_model, ids_b, mask)).abs().max()
    assert diff > 1e-4
    # padding stays masked in bidirectional mode: changing a pad token changes nothing
    ids_c = ids_a.clone()
    ids_c[0, 4] = 555
    if with_padding:
        assert torch.allclose(_first_hidden(tiny_model, ids_a, mask), _first_hidden(tiny_model, ids_c, mask), atol=1e-6)
    set_attention(tiny_model.backbone, "causal")
    assert probe_first_token_sensitivity(tiny_model.backbone) == 0.0


def test_bidirectional_model_embeddings_differ_and_reload(tiny_model_dir, tmp_path):
    from text2token import Text2TokenModel

    texts = ["one two three four", "a b"]
    causal = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", attention="causal", device="cpu")
    bidir = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", attention="bidirectional", device="cpu")
    assert not torch.allclose(torch.tensor(causal.encode(texts)), torch.tensor(bidir.encode(texts)), atol=1e-4)
    bidir.save_pretrained(tmp_path / "m")
    again = Text2TokenModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert again.attention == "bidirectional" and again.backbone.config.is_causal is False
    assert torch.allclose(torch.tensor(again.encode(texts)), torch.tensor(bidir.encode(texts)), atol=1e-6)


def test_unknown_attention_mode(tiny_model):
    with pytest.raises(ValueError):
        set_attention(tiny_model.backbone, "sideways")
