"""`text2token serve`: a saved folder behind LitServe's OpenAI-compatible /v1/embeddings gives encode's vectors,
and the server is closed by default (localhost, API key when exposed, bounded requests). Each test starts the real
CLI in a subprocess on a free localhost port and stops it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from helpers import with_correction

from text2token import Text2TokenModel
from text2token.cli import main

pytest.importorskip("litserve")
from text2token.serving import background_server  # noqa: E402

openai = pytest.importorskip("openai")

TEXTS = [
    "A cat sat on the mat.",
    "Stocks fell sharply after the bank raised rates!",
    "short",
    "word " * 200 + "end of a very long text that must be truncated.",
    'He said "yes."',
]


def serving(folder, *extra):
    """The real CLI serving ``folder`` on a free localhost port (one OpenMP thread, as a test beside others)."""
    return background_server(folder, *extra, env={"OMP_NUM_THREADS": "1"}, api_key="k3y", startup_s=180)


def _cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_served_vectors_equal_encode(tmp_path, tiny_model_dir, pooling):
    ours = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling=pooling, max_length=48, device="cpu")
    if pooling == "mean":  # one case with an isotropy correction: the server applies the folder's own
        with_correction(ours)
    folder = tmp_path / "model"
    ours.save_pretrained(folder)
    expected = ours.encode(TEXTS, batch_size=2, normalize_embeddings=True)
    with serving(folder) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        response = client.embeddings.create(model="text2token", input=TEXTS)
        served = [d.embedding for d in sorted(response.data, key=lambda d: d.index)]
        one = client.embeddings.create(model="text2token", input=TEXTS[3]).data[0].embedding  # a lone long text
        floats = httpx.post(
            url + "/v1/embeddings", json={"model": "m", "input": TEXTS[:2], "encoding_format": "float"}, timeout=60
        ).json()["data"]  # the openai client itself asks for base64 and decodes it
    assert len(served) == len(TEXTS)
    assert _cosines(served, expected).min() >= 0.9999
    assert np.linalg.norm(served, axis=1) == pytest.approx(1.0, abs=1e-4)  # unit length, as OpenAI's
    assert _cosines([one], expected[3:4]).min() >= 0.9999
    assert _cosines([d["embedding"] for d in floats], expected[:2]).min() >= 0.9999


@pytest.mark.slow
def test_server_is_closed_by_default_and_batches_concurrent_requests(tmp_path, tiny_model_dir):
    ours = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="last", max_length=48, device="cpu")
    folder = tmp_path / "model"
    ours.save_pretrained(folder)
    expected = ours.encode(TEXTS, batch_size=2, normalize_embeddings=True)
    key_file = tmp_path / "key"
    key_file.write_text("k3y\n")
    with serving(
        folder, "--api-key-file", str(key_file), "--max-texts", "3", "--max-chars", "2000", "--max-batch-size", "4"
    ) as url:
        endpoint = url + "/v1/embeddings"
        no_key = httpx.post(endpoint, json={"model": "m", "input": "hello"}, timeout=30)
        wrong_key = httpx.post(
            endpoint, json={"model": "m", "input": "hello"}, timeout=30, headers={"Authorization": "Bearer nope"}
        )
        client = openai.OpenAI(base_url=url + "/v1", api_key="k3y", max_retries=0)
        with ThreadPoolExecutor(8) as pool:  # concurrent one-text requests, batched by LitServe
            served = list(pool.map(lambda t: client.embeddings.create(model="m", input=t).data[0].embedding, TEXTS * 2))
        auth = {"Authorization": "Bearer k3y"}
        too_long = httpx.post(endpoint, json={"model": "m", "input": "x" * 2001}, headers=auth, timeout=30)
    assert no_key.status_code == 401 and wrong_key.status_code == 401
    assert _cosines(served, np.concatenate([expected, expected])).min() >= 0.9999
    assert too_long.status_code == 413 and "2001 characters" in too_long.text and "2000" in too_long.text


@pytest.mark.slow
def test_server_bounds_texts_per_request(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu").save_pretrained(folder)
    with serving(folder, "--max-texts", "3") as url:
        too_many = httpx.post(url + "/v1/embeddings", json={"model": "m", "input": ["a"] * 4}, timeout=30)
        empty = httpx.post(url + "/v1/embeddings", json={"model": "m", "input": []}, timeout=30)
        fine = httpx.post(url + "/v1/embeddings", json={"model": "m", "input": ["a"] * 3}, timeout=30)
        tokens = httpx.post(url + "/v1/embeddings", json={"model": "m", "input": [1, 2, 3]}, timeout=30)
    assert too_many.status_code == 413 and "4 texts" in too_many.text and "at most 3" in too_many.text
    assert empty.status_code in (400, 422)
    assert fine.status_code == 200 and len(fine.json()["data"]) == 3
    assert tokens.status_code == 400 and "token-id" in tokens.text


def test_exposed_host_needs_an_api_key(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.delenv("TEXT2TOKEN_API_KEY", raising=False)
    assert main(["serve", str(tiny_model_dir), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 exposes the server" in err and "API key" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert main(["serve", str(tiny_model_dir), "--api-key-file", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # --model as every other command takes it (it was "unrecognized arguments: --model"); one model, not two.
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", str(tiny_model_dir), "--model", str(tiny_model_dir)])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve"])
    assert "MODEL" in capsys.readouterr().err
    # an address LitServe cannot bind is one line before anything starts (it was a traceback after "serving ...")
    assert main(["serve", str(tiny_model_dir), "--host", "10.1.2.3", "--api-key-file", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--host 10.1.2.3" in err and "binds only" in err and "serving" not in err


def test_localhost_binds_the_loopback_address():
    from text2token.serving import bind_address

    assert bind_address("localhost") == "127.0.0.1" and bind_address("::") == "::"


def test_an_unknown_dtype_is_refused_when_the_server_is_built_not_in_its_workers(tiny_model_dir):
    from text2token.errors import ConfigError
    from text2token.serving import build_server

    with pytest.raises(ConfigError, match="dtype must be one of auto, float32, bfloat16, float16, got 'fp32'"):
        build_server(str(tiny_model_dir), dtype="fp32")


def test_loopback_detection():
    from text2token.serving import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.10")
    assert not is_loopback("example.com")


@pytest.mark.slow
def test_sigterm_drains_and_stops_every_process_of_the_server_and_frees_the_port(tmp_path, tiny_model_dir):
    """What a process manager does (systemd, Docker, Kubernetes): SIGTERM to the main process only, while clients
    keep sending. It once left two workers alive with parent 1, holding the port and answering."""
    import os
    import signal
    import socket
    import threading
    import time

    from text2token.serving import session_processes, start_server

    ours = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", max_length=48, device="cpu")
    ours.save_pretrained(tmp_path / "model")
    proc, url = start_server(tmp_path / "model", env={"OMP_NUM_THREADS": "1"})
    port = int(url.rsplit(":", 1)[1])
    try:
        outcomes, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                try:
                    r = httpx.post(url + "/v1/embeddings", json={"model": "m", "input": TEXTS[:2]}, timeout=30)
                    outcomes.append(r.status_code)
                except httpx.TransportError:
                    outcomes.append("refused")
                    time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(2)
        os.kill(proc.pid, signal.SIGTERM)  # the main process only, as a process manager sends it
        proc.wait(timeout=90)
        stop.set()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a request hung after SIGTERM"
        deadline = time.monotonic() + 30
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert session_processes(proc.pid) == [], "a process of the server outlived SIGTERM"
        with socket.socket() as s:  # the port is free again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        assert 200 in outcomes and set(outcomes) <= {200, 503, "refused"}, outcomes  # answered, or refused cleanly
        assert proc.returncode == 0
    finally:
        if proc.poll() is None or session_processes(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


@pytest.mark.slow
def test_openai_client_sees_openai_shaped_errors_usage_models_and_the_key_rule(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", max_length=48, device="cpu")
    model.save_pretrained(folder)
    key_file = tmp_path / "key"
    key_file.write_text("k3y\n")
    with serving(folder, "--api-key-file", str(key_file), "--max-texts", "3") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="k3y", max_retries=0)
        ok = client.embeddings.create(model="m", input=TEXTS[:2])
        errors = {}
        for name, kwargs in {
            "too_many": {"input": ["a"] * 4},
            "dimensions": {"input": "a text", "dimensions": 16},
            "empty_string": {"input": ["fine", ""]},
        }.items():
            with pytest.raises(openai.APIStatusError) as exc:
                client.embeddings.create(model="m", **kwargs)
            errors[name] = exc.value
        listed = client.models.list()
        auth = {"Authorization": "Bearer k3y"}
        json_type = {**auth, "Content-Type": "application/json"}
        malformed = httpx.post(url + "/v1/embeddings", content=b"{not json", headers=json_type, timeout=30)
        untyped = httpx.post(url + "/v1/embeddings", content=b"{not json", headers=auth, timeout=30)
        missing = httpx.post(url + "/v1/embeddings", json={"model": "m"}, headers=auth, timeout=30)
        no_key_bad_body = httpx.post(url + "/v1/embeddings", content=b"{not json", timeout=30)
        open_paths = {p: httpx.get(url + p, timeout=30).status_code for p in ("/health", "/docs", "/v1/models")}
        right_dimensions = client.embeddings.create(model="m", input="x", dimensions=64)
    assert ok.usage.prompt_tokens == sum(len(ids) for ids in model.token_ids(TEXTS[:2]))  # real tokens, template in
    assert ok.usage.total_tokens == ok.usage.prompt_tokens
    assert errors["too_many"].status_code == 413 and "4 texts in one request; at most 3" in str(errors["too_many"])
    assert errors["dimensions"].status_code == 400 and "64-dimensional vectors only" in str(errors["dimensions"])
    assert errors["empty_string"].status_code == 400 and "input[1] is empty" in str(errors["empty_string"])
    body = errors["too_many"].response.json()
    assert set(body["error"]) >= {"message", "type", "code"} and body["error"]["code"] == 413
    assert [m.id for m in listed.data] == ["model"]
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    assert missing.status_code == 400 and "'input'" in missing.json()["error"]["message"]
    assert untyped.status_code == 400 and "must be a JSON object" in untyped.json()["error"]["message"]
    assert no_key_bad_body.status_code == 401  # the key before the body
    assert open_paths == {"/health": 401, "/docs": 401, "/v1/models": 401}  # a key, when set, guards every path
    assert len(right_dimensions.data[0].embedding) == 64
