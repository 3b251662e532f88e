"""`text2token train --output RUN --resume` continues the run as it was configured (issue: the README's
resume command used to load the built-in defaults and write them over the run's record)."""

import json
import signal
import subprocess

import pytest
import yaml
from helpers import SENTENCES, wait_for_steps

from text2token.cli import main


def _run_config(tmp_path, model_dir):
    """A config file like configs/demo.yaml, for the tiny model and a small corpus."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cfg = {
        "model": {"name": str(model_dir), "pooling": "mean"},
        "data": {"train_file": str(corpus)},
        "lora": {"r": 8, "dropout": 0.0},
        "training": {"batch_size": 8, "max_length": 32},
        "stage1": {"steps": 20, "lr": 3e-3},
        "stage2": {"steps": 30, "max_texts": 16, "tau": 0.1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snapshot(run):
    return {
        name: (run / name).read_bytes()
        for name in ("config.yaml", "run_info.json", "train_summary.json")
        if (run / name).is_file()
    }


def test_resume_of_a_finished_run_changes_nothing(tmp_path, tiny_model_dir, capsys):
    run = tmp_path / "R"
    args = [
        "train",
        "--config",
        str(_run_config(tmp_path, tiny_model_dir)),
        "--output",
        str(run),
        "--stages",
        "data",
        "stage1.steps=3",
    ]
    assert main(args) == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["train", "--output", str(run), "--resume"]) == 0  # no --config: the run's own config
    assert "already finished" in capsys.readouterr().out
    assert _snapshot(run) == before, "config, run info and summary are untouched"


def test_resume_refuses_settings_that_change_the_computation_and_allows_more_steps(tmp_path, tiny_model_dir, capsys):
    run = tmp_path / "R"
    assert (
        main(
            [
                "train",
                "--config",
                str(_run_config(tmp_path, tiny_model_dir)),
                "--output",
                str(run),
                "--stages",
                "data",
                "stage1.steps=2",
            ]
        )
        == 0
    )
    before = _snapshot(run)
    capsys.readouterr()
    assert main(["train", "--output", str(run), "--resume", "lora.r=4", "stage1.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "lora.r: 8 → 4" in err and "stage1.lr: 0.003 → 0.1" in err and "another --output" in err
    assert len(err.strip().splitlines()) == 1 and _snapshot(run) == before, "nothing written before the refusal"
    # more steps and an added stage are what resuming is for
    assert (
        main(["train", "--output", str(run), "--resume", "stage1.steps=4", "--stages", "data,model", "stage2.steps=2"])
        == 0
    )
    log = [json.loads(line)["step"] for line in (run / "stage1-data" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["stage1"]["steps"] == 4 and cfg["stages"] == ["data", "model"] and cfg["lora"]["r"] == 8
    info = json.loads((run / "run_info.json").read_text())
    assert info["started"] == json.loads(before["run_info.json"])["started"] and len(info["resumed"]) == 1


@pytest.mark.slow
def test_ctrl_c_then_the_readme_resume_command_finishes_the_run_as_configured(tmp_path, tiny_model_dir, capsys):
    """The reported repro: train --config … --output R --stages data steps=3 save_every=1, Ctrl-C after step 1,
    then `train --output R --resume`."""
    import sys

    run = tmp_path / "R"
    cmd = [
        sys.executable,
        "-m",
        "text2token.cli",
        "train",
        "--config",
        str(_run_config(tmp_path, tiny_model_dir)),
        "--output",
        str(run),
        "--stages",
        "data",
        "stage1.steps=60",
        "training.save_every=1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(run / "stage1-data" / "train_log.jsonl", 1, proc)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130 and "continue with --resume" in proc.stderr.read()
    recorded = (run / "config.yaml").read_bytes()
    started = json.loads((run / "run_info.json").read_text())["started"]
    assert main(["train", "--output", str(run), "--resume"]) == 0
    assert (run / "config.yaml").read_bytes() == recorded
    assert json.loads((run / "run_info.json").read_text())["started"] == started
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "stage1-data: 60/60 steps, finished" in out and "stage2-model" not in out
