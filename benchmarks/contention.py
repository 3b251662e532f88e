"""Two torch jobs on one CPU: how much each slows down against running alone, and what helps.

The job is a real `encode` of bundled corpus lines with the bundled SmolLM2 (fp32), timed inside the process
(model load excluded: the `encode` call only), or (--workload train) a real `text2token train --objective simcse`
of a few steps, timed by its own seconds per step. Each setting runs the job once alone and then twice at the
same time; the figure is each concurrent job's time over the solo time (goal: <= 2.5x, where 2x is a fair share
of the cores).

Settings: torch's defaults (one OpenMP thread per core, libgomp's default wait policy: threads spin for a while
before sleeping), OpenMP's passive wait policy (OMP_WAIT_POLICY=PASSIVE: idle threads sleep at once), a short spin
(GOMP_SPINCOUNT=10000, what `import text2token` sets), and each job given half the cores (OMP_NUM_THREADS = cores / 2).

    python benchmarks/contention.py --texts 128 --json benchmarks/results/contention.json
    python benchmarks/contention.py --workload train --steps 6 --json benchmarks/results/contention_train.json
    python benchmarks/contention.py --solo-ab 2 --json benchmarks/results/contention_solo.json   # cost when alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

JOB = r"""
import sys, time
import torch  # first: OpenMP starts with the environment below, whatever text2token's import would set
from text2token import Text2TokenModel
from text2token.textio import read_texts
from text2token.training.corpus import BUNDLED_CORPUS
texts = read_texts(str(BUNDLED_CORPUS))[: int(sys.argv[1])]
model = Text2TokenModel.from_pretrained("default", device="cpu")
model.encode(texts[:32], batch_size=32)
print("READY", flush=True)
sys.stdin.readline()  # start together
t = time.perf_counter()
model.encode(texts, batch_size=32)
print(f"SECONDS {time.perf_counter() - t:.3f}", flush=True)
"""


def run_jobs(n: int, texts: int, env: dict) -> list[float]:
    """Start ``n`` jobs, wait until each has loaded its model, release them together, return their encode times."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    procs = [
        subprocess.Popen(  # noqa: S603 — this interpreter and a script of ours
            [sys.executable, "-c", JOB, str(texts)],
            env={**base, **env},
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    for p in procs:
        line = p.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"a job failed to start: {line!r}")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    times = []
    for p in procs:
        out = p.stdout.read()
        p.wait()
        times.append(float(next(x for x in out.split("\n") if x.startswith("SECONDS")).split()[1]))
    return times


TRAIN_JOB = r"""
import sys
import torch  # first, as above
from text2token.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_training(n: int, steps: int, env: dict, folder: Path) -> list[float]:
    """Start ``n`` SimCSE trainings of ``steps`` steps together; their seconds per optimizer step (model load and
    data preparation excluded), from each run's train_summary.json."""
    import shutil

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    shutil.rmtree(folder, ignore_errors=True)
    procs = [
        subprocess.Popen(  # noqa: S603 — this interpreter and a script of ours
            [
                sys.executable,
                "-c",
                TRAIN_JOB,
                "train",
                "--quiet",
                "--objective",
                "simcse",  # noqa: S603
                "--output",
                str(folder / f"job{i}"),
                f"simcse.steps={steps}",
            ],
            env={**base, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a training job failed")
    return [
        json.loads((folder / f"job{i}" / "train_summary.json").read_text())["stage_simcse"]["seconds_per_step"]
        for i in range(n)
    ]


def solo_step_time(env: dict, folder: Path, steps: int = 10) -> float:
    """Seconds per step of `make run`'s recipe, stage 1 only, alone, over steps 3..``steps`` (warm-up excluded)."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    root = Path(__file__).resolve().parents[1]
    subprocess.run(  # noqa: S603 — this interpreter and a script of ours
        [
            sys.executable,
            "-c",
            TRAIN_JOB,
            "train",
            "--quiet",
            "--config",  # noqa: S603
            str(root / "configs" / "combined.yaml"),
            "--stages",
            "data",
            "--output",
            str(folder),
            f"stage1.steps={steps}",
        ],
        env={**base, **env},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = [json.loads(line) for line in (folder / "stage1-data" / "train_log.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in log if "seconds" in r][2:]
    return sum(seconds) / len(seconds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--texts", type=int, default=256, help="corpus lines each job encodes")
    p.add_argument(
        "--workload",
        choices=["encode", "train"],
        default="encode",
        help="encode: `encode` of --texts lines; train: a SimCSE training of --steps steps (s/step)",
    )
    p.add_argument("--steps", type=int, default=8, help="training steps per job (--workload train)")
    p.add_argument(
        "--solo-ab",
        type=int,
        default=0,
        metavar="N",
        help="instead: what each setting costs a job alone — N alternating rounds of make run's recipe, "
        "stage 1, 10 steps (s/step over steps 3-10)",
    )
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    settings = {
        "torch defaults": {},
        "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
        "GOMP_SPINCOUNT=10000 (text2token's default)": {"GOMP_SPINCOUNT": "10000"},
        f"OMP_NUM_THREADS={max(1, cores // 2)} per job": {"OMP_NUM_THREADS": str(max(1, cores // 2))},
    }
    if args.solo_ab:
        import tempfile

        times: dict[str, list[float]] = {name: [] for name in settings}
        with tempfile.TemporaryDirectory() as d:
            for round_ in range(args.solo_ab):
                for i, (name, env) in enumerate(settings.items()):
                    times[name].append(round(solo_step_time(env, Path(d) / f"r{round_}-{i}"), 2))
                    print(f"{name:44s} round {round_}: {times[name][-1]:.2f} s/step", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"cores": cores, "solo_ab": times}, indent=2) + "\n")
        return 0
    rows = []
    for name, env in settings.items():
        if args.workload == "encode":
            solo = run_jobs(1, args.texts, env)[0]
            pair = run_jobs(2, args.texts, env)
        else:
            import tempfile

            with tempfile.TemporaryDirectory() as d:
                solo = run_training(1, args.steps, env, Path(d) / "solo")[0]
                pair = run_training(2, args.steps, env, Path(d) / "pair")
        row = {
            "setting": name,
            "solo_s": round(solo, 2),
            "concurrent_s": [round(x, 2) for x in pair],
            "slowdown": [round(x / solo, 2) for x in pair],
        }
        row["goal_met"] = max(row["slowdown"]) <= 2.5
        rows.append(row)
        print(
            f"{name:28s} solo {solo:6.2f} s; two at once {pair[0]:6.1f} s, {pair[1]:6.1f} s "
            f"({max(row['slowdown']):.2f}x solo)",
            flush=True,
        )
    base = rows[0]["solo_s"]
    print("\n| setting | solo s | × torch-default solo | two at once, s | slowdown |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['solo_s']} | {r['solo_s'] / base:.2f} | {r['concurrent_s'][0]}, "
            f"{r['concurrent_s'][1]} | {max(r['slowdown']):.2f}x |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cores": cores,
                    "workload": args.workload,
                    "texts": args.texts,
                    "steps": args.steps if args.workload == "train" else None,
                    "rows": rows,
                    "goal": "each of two concurrent jobs <= 2.5x its solo time",
                    "when": time.strftime("%Y-%m-%d %H:%M"),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
