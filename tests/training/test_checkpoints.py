"""Training checkpoints load without pickle: a crafted optimizer.pt whose unpickling would run code is refused on
resume, and the code never runs."""

import os
from pathlib import Path

import pytest
import torch

from text2token.errors import Text2TokenError
from text2token.training.checkpoints import load_checkpoint, load_training_state


class _WritesAMarker:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):  # what unpickling this object does: open(marker, "w")
        return (open, (self.marker, "w"))


def test_a_crafted_optimizer_state_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "checkpoint-0000001"
    ckpt.mkdir()
    torch.save(
        {"optimizer": _WritesAMarker(str(marker)), "scheduler": {}, "rng": torch.get_rng_state()}, ckpt / "optimizer.pt"
    )
    with pytest.raises(Text2TokenError, match="holds objects a safe load refuses"):
        load_checkpoint(ckpt, model=None, optimizer=None, scheduler=None)
    assert not marker.exists()


def test_a_real_optimizer_and_scheduler_state_round_trips_under_the_safe_load(tmp_path):
    param = torch.nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.AdamW([param], lr=1e-3)
    param.grad = torch.randn(4, 3)
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}
    torch.save(state, tmp_path / "optimizer.pt")
    loaded = load_training_state(Path(tmp_path / "optimizer.pt"))
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(4, 3))], lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(loaded["rng"], state["rng"]) and os.path.getsize(tmp_path / "optimizer.pt") > 0
