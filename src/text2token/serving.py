"""Serve a saved model over an OpenAI-compatible ``POST /v1/embeddings``, through LitServe.

LitServe (Lightning AI's serving engine: worker processes, request queues, dynamic batching, an OpenAI
embeddings spec) does the serving; this module only tells it how to load and call a text2token folder, so the
served vectors are ``Text2TokenModel.encode``'s own (same template, pooling, truncation), L2-normalised as
OpenAI's are. Why not infinity-emb or vLLM: see docs/production/serving.md.

Closed by default: it binds to 127.0.0.1; binding elsewhere needs an API key (``Authorization: Bearer KEY``, as
OpenAI clients send it) unless explicitly told otherwise; a request's texts, each text's length and the body size
are bounded, with a 413 (too large) or 400 (wrong input) that says which bound and which item.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

from .errors import ConfigError, Text2TokenError
from .modes import SERVE_API_KEY_ENV as API_KEY_ENV
from .modes import SERVE_MAX_CHARS as DEFAULT_MAX_CHARS
from .modes import SERVE_MAX_TEXTS as DEFAULT_MAX_TEXTS
from .modes import DType


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, 'localhost')."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


try:
    import litserve
    from fastapi import HTTPException
    from litserve.specs import OpenAIEmbeddingSpec
    from litserve.specs.openai_embedding import EmbeddingRequest
except ImportError:  # pragma: no cover - the extra is installed by make setup
    raise ConfigError("serving needs LitServe: pip install 'text2token[serve]'") from None


class EmbeddingSpec(OpenAIEmbeddingSpec):
    """LitServe's OpenAI embeddings spec, answering an empty ``input`` with a 400 (LitServe's own gives a 500) and a
    list sent to a batching server with a 400 that names the CLI flag (LitServe's names its own argument)."""

    async def embeddings_endpoint(self, request: EmbeddingRequest):
        if isinstance(request.input, list) and not request.input:
            raise HTTPException(status_code=400, detail="'input' is empty: give a text or a list of texts")
        if isinstance(request.input, list) and len(request.input) > 1 and self._max_batch_size > 1:
            raise HTTPException(
                status_code=400,
                detail=f"this server batches concurrent requests (--max-batch-size {self._max_batch_size}): send one "
                "text per request, or start it with --max-batch-size 1 to send lists of texts",
            )
        return await super().embeddings_endpoint(request)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
}


def openai_error(status: int, message: str, headers: dict | None = None):
    """A JSON error response in OpenAI's shape (``{"error": {"message", "type", "code"}}``), which the official
    clients turn into an exception whose text is the message."""
    from fastapi.responses import JSONResponse

    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
        headers=headers,
    )


def _validation_message(exc) -> str:
    """One line for a body FastAPI could not read (malformed JSON, a missing or wrongly typed field)."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return "the request body is not valid JSON for /v1/embeddings"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    if where == "body":
        return "the request body must be a JSON object with 'model' and 'input' (Content-Type: application/json)"
    return f"'{where}': {first.get('msg', 'invalid')}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


def make_openai_compatible(server, api_key: str | None, model_id: str) -> None:
    """What the official OpenAI clients expect of the app around LitServe's endpoint: errors in OpenAI's shape,
    a malformed body as a 400 with one message, a missing key refused (401) before the body is read on every path
    (``/health``, ``/docs`` and ``/v1/models`` included: none is open when a key is set), and ``/v1/models``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = server.app

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return openai_error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def body_error(request, exc):
        return openai_error(400, _validation_message(exc))

    if api_key is not None:

        @app.middleware("http")
        async def require_key(request, call_next):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                return openai_error(
                    401, "missing or wrong API key (send 'Authorization: Bearer KEY')", {"WWW-Authenticate": "Bearer"}
                )
            return await call_next(request)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "text2token"}]}


class EmbeddingAPI(litserve.LitAPI):
    """How LitServe's workers load and call a text2token folder (built in the server process, pickled into each
    worker, set up there): the folder is loaded once per worker and encodes exactly as ``Text2TokenModel.encode``."""

    def __init__(
        self,
        model: str,
        *,
        device: str | None,
        dtype: str,
        batch_size: int,
        max_texts: int,
        max_chars: int,
        max_batch_size: int,
        batch_timeout: float,
    ):
        super().__init__(spec=EmbeddingSpec(), max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_path, self.device, self.dtype, self.batch_size = model, device, dtype, batch_size
        self.max_texts, self.max_chars = max_texts, max_chars  # the API key is checked by the app, on every path

    def setup(self, device):
        from .devices import dtype_from_name
        from .model import Text2TokenModel

        self.model = Text2TokenModel.from_pretrained(
            self.model_path, device=self.device or device, dtype=dtype_from_name(self.dtype)
        )
        self.model.eval()

    def decode_request(self, request, context):
        texts = request.input
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise HTTPException(status_code=400, detail="'input' is empty: give a text or a list of texts")
        if not all(isinstance(t, str) for t in texts):
            raise HTTPException(
                status_code=400, detail="'input' must be a text or a list of texts (token-id input is not supported)"
            )
        hidden = self.model.backbone.config.hidden_size
        if request.dimensions is not None and request.dimensions != hidden:
            raise HTTPException(
                status_code=400,
                detail=f"'dimensions' {request.dimensions}: this model gives {hidden}-dimensional vectors only "
                "(it is not trained to be cut shorter); leave 'dimensions' out",
            )
        empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
        if empty is not None:
            raise HTTPException(status_code=400, detail=f"input[{empty}] is empty: every text must have content")
        if len(texts) > self.max_texts:
            raise HTTPException(status_code=413, detail=f"{len(texts)} texts in one request; at most {self.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > self.max_chars:
                raise HTTPException(
                    status_code=413, detail=f"input[{i}] has {len(text)} characters; at most {self.max_chars} per text"
                )
        context["tokens"] = sum(len(ids) for ids in self.model.token_ids(texts))  # usage: the tokens encoded
        return texts

    def encode_response(self, output, context):
        return {"embeddings": output, "prompt_tokens": context["tokens"], "total_tokens": context["tokens"]}

    def predict(self, texts):
        return self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)


class BatchedEmbeddingAPI(EmbeddingAPI):
    """With LitServe's dynamic batching: concurrent requests (one text each, LitServe's rule) share a forward pass."""

    def batch(self, inputs):
        return [texts[0] for texts in inputs]

    def unbatch(self, output):
        return [row[None, :] for row in output]


def build_server(
    model: str,
    *,
    device: str | None = None,
    dtype: str = "auto",
    batch_size: int = 32,
    max_batch_size: int = 1,
    batch_timeout: float = 0.01,
    workers: int = 1,
    api_key: str | None = None,
    max_texts: int = DEFAULT_MAX_TEXTS,
    max_chars: int = DEFAULT_MAX_CHARS,
    timeout: float = 60.0,
    model_id: str | None = None,
) -> litserve.LitServer:
    """A ``litserve.LitServer`` serving ``model`` (a folder or a named backbone) at ``/v1/embeddings``.

    ``max_batch_size`` > 1 turns on LitServe's dynamic batching across requests (up to that many requests,
    waiting at most ``batch_timeout`` s); LitServe then requires one text per request. With 1 (the default) a
    request may carry a list of up to ``max_texts`` texts, encoded ``batch_size`` at a time. ``model_id``: the name
    ``/v1/models`` lists (default: the folder's name)."""
    DType.require(dtype, "dtype", ConfigError)  # here, not first in each worker process
    api_class = BatchedEmbeddingAPI if max_batch_size > 1 else EmbeddingAPI
    api = api_class(
        model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        max_texts=max_texts,
        max_chars=max_chars,
        max_batch_size=max_batch_size,
        batch_timeout=batch_timeout,
    )
    accelerator = "auto" if device is None else "cpu" if device.startswith("cpu") else device.split(":")[0]
    server = litserve.LitServer(
        api,
        accelerator=accelerator,
        devices=1,
        workers_per_device=workers,
        timeout=timeout,
        max_payload_size=max_texts * max_chars * 4 + 65_536,
    )
    make_openai_compatible(server, api_key, model_id or os.path.basename(os.path.normpath(str(model))) or str(model))
    return server


# the addresses LitServe accepts (a listing, not a bind: check_exposure still asks for a key beyond loopback)
BINDABLE = {"0.0.0.0": "every IPv4 interface", "127.0.0.1": "this machine", "::": "every interface"}  # noqa: S104


def bind_address(host: str) -> str:
    """The address LitServe is asked to bind for ``--host``: ``localhost`` is 127.0.0.1; LitServe binds only
    0.0.0.0, 127.0.0.1 and ::, so any other address is refused here, in one line, before anything starts."""
    if host == "localhost":
        return "127.0.0.1"
    if host not in BINDABLE:
        choices = ", ".join(f"{a} ({what})" for a, what in BINDABLE.items())
        raise ConfigError(
            f"--host {host}: the server (LitServe) binds only {choices} or localhost; to reach it on one address, "
            "bind 0.0.0.0 behind a firewall or reverse proxy"
        )
    return host


def check_exposure(host: str, api_key: str | None, allow_no_key: bool) -> None:
    """Refuse to bind beyond this machine without an API key (unless ``allow_no_key``)."""
    if not is_loopback(host) and api_key is None and not allow_no_key:
        raise ConfigError(
            f"--host {host} exposes the server beyond this machine: give an API key (--api-key-file "
            f"or ${API_KEY_ENV}), or pass --no-api-key to serve without one"
        )


def read_api_key(path: str | None) -> str | None:
    """The API key from a file (first line) or ``$TEXT2TOKEN_API_KEY``; None when neither is set."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                key = f.readline().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the API key file {path}: {e.strerror}") from None
        if not key:
            raise ConfigError(f"the API key file {path} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def session_processes(sid: int) -> list[int]:
    """Live processes (zombies excluded) of the session ``sid`` — a server started in its own session, as
    :func:`background_server` starts it — read from /proc (Linux): what is left of it after it stopped."""
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    with open(f"/proc/{entry}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                            alive.append(int(entry))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                continue
    return alive


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str, *options: str, env: dict | None = None, api_key: str | None = None, startup_s: float = 300
) -> tuple[subprocess.Popen, str]:
    """Start ``text2token serve MODEL OPTIONS`` on a free localhost port in a subprocess of its own session; return
    the process and the base URL once ``/health`` answers (sent with ``api_key`` as a Bearer token, if any). A server
    that exits or does not come up in ``startup_s`` is an error quoting the end of its output (and is stopped)."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "text2token", "serve", str(model), "--port", str(port), "--quiet", *options]
    proc = subprocess.Popen(  # noqa: S603 — this interpreter running our own CLI
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + startup_s
    while True:
        if proc.poll() is not None:
            tail = proc.stdout.read().decode(errors="replace")[-3000:]
            proc.stdout.close()
            raise Text2TokenError(f"the server exited with status {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url + "/health", timeout=2, headers=headers).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            raise Text2TokenError(f"the server did not answer /health within {startup_s:.0f} s")
        time.sleep(0.5)


@contextmanager
def background_server(
    model: str, *options: str, env: dict | None = None, api_key: str | None = None, startup_s: float = 300
):
    """:func:`start_server` for the length of the block: yields the base URL; the server is stopped after it."""
    proc, url = start_server(model, *options, env=env, api_key=api_key, startup_s=startup_s)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
