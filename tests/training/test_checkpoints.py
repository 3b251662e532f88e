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


@pytest.mark.parametrize("failing_save", [2, 5])
def test_a_full_disk_while_a_checkpoint_is_written_keeps_the_last_one_and_resumes_to_the_same_weights(
    tmp_path, tiny_model_dir, capsys, monkeypatch, failing_save
):
    """Fault injection: the disk fills up while the k-th checkpoint's optimizer state is written (the 5th save is
    the final step's). train ends with one line saying to resume; every earlier checkpoint is intact and nothing
    half-written is visible as a checkpoint or a model; --resume after space is freed ends with the adapter of an
    uninterrupted run, bit for bit."""
    import errno

    from helpers import tiny_run_config
    from safetensors.torch import load_file

    from text2token.cli import main
    from text2token.training import checkpoints
    from text2token.training.checkpoints import latest_checkpoint, verify_checkpoint

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = tiny_run_config(tmp_path / "a", tiny_model_dir, "stage1.steps=10")
    whole.save(tmp_path / "a.yaml")
    assert main(["train", "-q", "--config", str(tmp_path / "a.yaml")]) == 0
    cfg = tiny_run_config(tmp_path / "b", tiny_model_dir, "stage1.steps=10")
    cfg.save(tmp_path / "b.yaml")
    run = tmp_path / "b" / "run"
    real_save, calls = torch.save, []

    def full_disk(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == failing_save:
            Path(f).write_bytes(b"\x80\x02partial")  # a few bytes got out
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoints.torch, "save", full_disk)
    capsys.readouterr()
    assert main(["train", "-q", "--config", str(tmp_path / "b.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "--resume" in err and "Traceback" not in err
    stage = run / "stage1-data"
    kept = sorted(p.name for p in (stage / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert kept == [f"checkpoint-{2 * n:07d}" for n in range(max(1, failing_save - 2), failing_save)]
    assert all(verify_checkpoint(stage / "checkpoints" / k) is None for k in kept)
    assert not (run / "model").exists() and not (stage / "adapter_final.safetensors").exists()
    monkeypatch.setattr(checkpoints.torch, "save", real_save)  # space freed
    assert latest_checkpoint(stage).name == kept[-1]
    assert main(["train", "-q", "--output", str(run), "--resume"]) == 0
    a = load_file(str(tmp_path / "a" / "run" / "stage1-data" / "adapter_final.safetensors"))
    b = load_file(str(stage / "adapter_final.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
