import pytest
import torch

from text2token.pooling import pool

H = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [9.0, 9.0]]])  # 1×4×2


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_hand_computed_under_padding(side):
    # three real tokens with values a, b, c and one pad whose hidden state (9, 9) must be ignored
    a, b, c, padv = [1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [9.0, 9.0]
    if side == "right":
        hidden, mask = torch.tensor([[a, b, c, padv]]), torch.tensor([[1, 1, 1, 0]])
    else:
        hidden, mask = torch.tensor([[padv, a, b, c]]), torch.tensor([[0, 1, 1, 1]])
    assert torch.allclose(pool(hidden, mask, "mean"), torch.tensor([[3.0, 2.0]]))
    assert torch.allclose(pool(hidden, mask, "last"), torch.tensor([c]))
    # SGPT weights 1, 2, 3 over the real tokens: (1*a + 2*b + 3*c) / 6
    assert torch.allclose(pool(hidden, mask, "weighted_mean"), torch.tensor([[(1 + 6 + 15) / 6, (0 + 4 + 12) / 6]]))


def test_pooling_batch_with_different_lengths():
    hidden = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)  # [[0,1,2],[3,4,5]]
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    assert pool(hidden, mask, "mean").flatten().tolist() == [0.0, 4.0]
    assert pool(hidden, mask, "last").flatten().tolist() == [0.0, 5.0]


def test_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        pool(H, torch.ones(1, 4), "max")
