import torch
import torch.nn.functional as F

from text2token.objectives import sparse_kl_loss


def test_sparse_kl_equals_dense_kl():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    ids = torch.tensor([[1, 7, 9, 0], [4, 5, 0, 0], [49, 0, 0, 0]])
    weights = torch.tensor([[0.2, 0.3, 0.5, 0.0], [0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    dense_q = torch.zeros(3, 50).scatter_add_(1, ids, weights)
    expected = F.kl_div(torch.log_softmax(logits, -1), dense_q, reduction="batchmean")
    manual = (
        sum(
            (
                dense_q[i][dense_q[i] > 0]
                * (dense_q[i][dense_q[i] > 0].log() - torch.log_softmax(logits[i], -1)[dense_q[i] > 0])
            ).sum()
            for i in range(3)
        )
        / 3
    )
    loss = sparse_kl_loss(logits, ids, weights)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(loss, manual, atol=1e-6)


def test_kl_zero_when_p_equals_q_and_positive_otherwise():
    q = torch.tensor([[0.25, 0.75]])
    logits = torch.full((1, 10), -1e4)
    logits[0, 3], logits[0, 8] = torch.log(q[0, 0]), torch.log(q[0, 1])
    ids = torch.tensor([[3, 8]])
    assert sparse_kl_loss(logits, ids, q).abs().item() < 1e-6
    assert sparse_kl_loss(torch.zeros(1, 10), ids, q).item() > 0.1


def test_gradient_flows_to_logits_only():
    logits = torch.randn(2, 20, requires_grad=True)
    weights = torch.tensor([[0.5, 0.5], [1.0, 0.0]], requires_grad=True)
    sparse_kl_loss(logits, torch.tensor([[1, 2], [3, 0]]), weights).backward()
    assert logits.grad is not None and weights.grad is None
