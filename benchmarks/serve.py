"""Load on `text2token serve` (LitServe, /v1/embeddings) against the model's own `encode`, in one run.

For each server setting (no batching across requests; LitServe's dynamic batching) the server is started on
localhost, then a fixed number of one-text requests is sent at concurrency 1, 8 and 32 (async httpx): requests/s,
texts/s, p50/p99 latency and failed requests. `encode`'s texts/s on the same texts (batch 32, in this process,
server stopped) is the baseline; the goal is >= 70% of it at concurrency 32 with no failed request. Texts are
bundled corpus lines; the server and this client share the machine's cores, as a one-box deployment would.

    python benchmarks/serve.py --model default --requests 256 --json benchmarks/results/serve.json

``--soak SECONDS``: instead, what a process manager does mid-load — the real CLI server under ``--soak-clients``
concurrent clients sending without pause; halfway through, SIGTERM to its main process (as systemd, Docker and
Kubernetes send it). Counted: requests answered (200), refused cleanly (connection refused, or 503 while it stops),
closed unanswered (sent on a kept-alive connection just as the stopping server closed it: HTTP/1.1's keep-alive
race — the server never read the request, and a client retries it, as the openai client does on connection errors)
and broken (any other status, a timeout, any other transport error); the seconds from SIGTERM to exit; processes of
the server left alive; whether the port is free again.

    python benchmarks/serve.py --model default --soak 60 --soak-clients 16 --json benchmarks/results/serve_soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


async def load(url: str, texts: list[str], concurrency: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    queue = list(enumerate(texts))

    async def worker(client):
        nonlocal errors
        while queue:
            _, text = queue.pop()
            t = time.perf_counter()
            try:
                r = await client.post(
                    url + "/v1/embeddings", json={"model": "m", "input": text, "encoding_format": "base64"}
                )
                ok = r.status_code == 200 and len(r.json()["data"]) == 1
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(texts),
        "errors": errors,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(texts) / wall, 2),
        "texts_per_s": round(len(texts) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
    }


def soak(model: str, seconds: float, clients: int, texts: list[str], batch_size: int) -> dict:
    import signal
    import socket
    from collections import Counter

    import httpx

    from text2token.serving import session_processes, start_server

    options = ["--max-batch-size", str(batch_size), "--batch-timeout", "0.01"]
    proc, url = start_server(model, *options)
    port = int(url.rsplit(":", 1)[1])
    try:
        before, after = Counter(), Counter()
        state = {"term": None, "stop": False}

        def outcome(status) -> str:
            if status == 200:
                return "answered"
            if status in (503, "connect refused"):
                return "refused cleanly"
            if status in ("ReadError", "RemoteProtocolError"):  # the connection closed before any response
                return "closed unanswered"
            return f"broken ({status})"

        async def client(c, k: int):
            i = k
            while not state["stop"]:
                sent_after = state["term"] is not None
                try:
                    r = await c.post(url + "/v1/embeddings", json={"model": "m", "input": texts[i % len(texts)]})
                    status = r.status_code
                except httpx.ConnectError:
                    status = "connect refused"
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                (after if sent_after else before)[outcome(status)] += 1
                if status != 200:
                    await asyncio.sleep(0.05)
                i += clients

        async def run() -> float:
            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            async with httpx.AsyncClient(timeout=120, limits=limits) as c:
                tasks = [asyncio.create_task(client(c, k)) for k in range(clients)]
                await asyncio.sleep(seconds / 2)
                state["term"] = time.perf_counter()
                os.kill(proc.pid, signal.SIGTERM)  # the main process only
                while proc.poll() is None:
                    await asyncio.sleep(0.05)
                exit_s = time.perf_counter() - state["term"]
                await asyncio.sleep(1)  # clients meet the stopped server
                state["stop"] = True
                await asyncio.gather(*tasks)
            return exit_s

        exit_s = asyncio.run(run())
        deadline = time.monotonic() + 30
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = session_processes(proc.pid)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                port_free = True
            except OSError:
                port_free = False
    finally:
        if proc.poll() is None or session_processes(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    total = before + after
    return {
        "clients": clients,
        "seconds_before_sigterm": seconds / 2,
        "before_sigterm": dict(before),
        "sent_after_sigterm": dict(after),
        "answered": total["answered"],
        "refused_cleanly": total["refused cleanly"],
        "closed_unanswered": total["closed unanswered"],
        "broken": sum(v for k, v in total.items() if k.startswith("broken")),
        "seconds_sigterm_to_exit": round(exit_s, 2),
        "exit_status": proc.returncode,
        "processes_left": len(left),
        "port_free": port_free,
    }


def encode_rate(model: str, texts: list[str], batch_size: int) -> float:
    from text2token import Text2TokenModel

    m = Text2TokenModel.from_pretrained(model, device="cpu")
    m.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    t = time.perf_counter()
    m.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="a text2token folder or a named backbone")
    p.add_argument("--requests", type=int, default=256, help="one-text requests per concurrency level")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--batch-size", type=int, default=32, help="encode's batch and the dynamic batch's maximum")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--soak", type=float, default=0, help="seconds of a soak with a SIGTERM halfway (see above)")
    p.add_argument("--soak-clients", type=int, default=16, help="concurrent clients of the soak")
    args = p.parse_args(argv)

    from text2token.backbone import resolve_model_path
    from text2token.serving import background_server
    from text2token.textio import read_texts
    from text2token.training.corpus import BUNDLED_CORPUS

    model = resolve_model_path(args.model)
    texts = read_texts(str(BUNDLED_CORPUS))[: args.requests]
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.soak:
        result = {
            "model": args.model,
            "cpu_count": os.cpu_count(),
            **soak(model, args.soak, args.soak_clients, texts, args.batch_size),
        }
        print(json.dumps(result, indent=2))
        ok = result["broken"] == 0 and result["processes_left"] == 0 and result["port_free"] and result["answered"]
        print(f"soak: every request answered or refused cleanly, nothing left running: {bool(ok)}")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    baseline = encode_rate(model, texts, args.batch_size)
    print(f"encode (batch {args.batch_size}): {baseline:.1f} texts/s")
    dynamic = ["--max-batch-size", str(args.batch_size), "--batch-timeout", "0.01"]
    settings = {
        "no batching across requests": ["--max-batch-size", "1"],
        f"dynamic batching (up to {args.batch_size})": [*dynamic, "--batch-size", str(args.batch_size)],
        # a dynamic batch mixes lengths; encode sorts it by length and runs it 8 at a time: less padding
        f"dynamic batching (up to {args.batch_size}), forward passes of 8": [*dynamic, "--batch-size", "8"],
    }
    rows = []
    for name, extra in settings.items():
        with background_server(model, *extra) as url:
            asyncio.run(load(url, texts[:16], 4))  # warm-up
            for c in levels:
                row = {"server": name, **asyncio.run(load(url, texts, c))}
                row["vs_encode"] = round(row["texts_per_s"] / baseline, 3)
                rows.append(row)
                print(
                    f"{name:52s} c={c:3d}: {row['texts_per_s']:7.1f} texts/s ({row['vs_encode']:.2f}x encode), "
                    f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, errors {row['errors']}"
                )
    best32 = max((r for r in rows if r["concurrency"] == max(levels)), key=lambda r: r["texts_per_s"])
    result = {
        "model": args.model,
        "cpu_count": os.cpu_count(),
        "encode_texts_per_s": round(baseline, 2),
        "rows": rows,
        "goal": "at the highest concurrency, >= 0.70x encode's texts/s and no failed request",
        "goal_met": best32["vs_encode"] >= 0.70 and best32["errors"] == 0,
        "best_at_max_concurrency": best32,
    }
    print("\n| server | concurrency | texts/s | × encode | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['concurrency']} | {r['texts_per_s']} | {r['vs_encode']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['errors']} |"
        )
    print(f"\nencode: {baseline:.1f} texts/s; goal met: {result['goal_met']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
