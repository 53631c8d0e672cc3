"""HTTP serving: one predictor behind FastAPI, requests micro-batched.

``create_app(predictor)`` serves ``POST /predict`` (``{"inputs": [...]}`` in,
``{"outputs": [...]}`` out: the records of ``predictor.predict(inputs)``, in order, as
``seqnlp predict`` writes them), ``GET /health`` (status and counters) and ``GET
/metadata`` (``predictor.metadata()``). A ``MicroBatcher`` (``seqnlp.serve_batcher``)
joins the inputs of the requests that arrive together into one ``predict`` call and
gives each request its slice; a bad input fails its own request only (500).
``/predict`` is answered by ``PredictPath``, ahead of all of FastAPI. Bad bodies
never reach the predictor: 400 (not JSON), 413 (over a limit, named), 422
(ill-typed), each ``{"error": "..."}``. ``seqnlp serve`` (``seqnlp.cli.serving``) runs
the app with uvicorn; FastAPI is imported only when an app is built.
"""

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from seqnlp.serve_batcher import MicroBatcher, Stats

if TYPE_CHECKING:  # the endpoints' annotations are evaluated by FastAPI: no __future__
    from seqnlp.predict import Predictor

Record = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]  # an ASGI app's receive
Item = str | list[str]
logger = logging.getLogger("seqnlp.serve")


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may hold.

    Args:
        max_chars: characters per input (a token list counts its tokens joined by
            single spaces).
        max_inputs: inputs per request.
    """

    max_chars: int = 10_000
    max_inputs: int = 256

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_inputs < 1:
            raise ValueError(f"limits must be at least 1, got {self}")

    @property
    def max_body_bytes(self) -> int:
        """The largest body read: room for ``max_inputs`` inputs of ``max_chars``
        characters each however they are written in JSON (UTF-8, escapes, quotes)."""
        return self.max_inputs * (12 * self.max_chars + 16) + 65_536


def parse_inputs(body: bytes, limits: Limits, token_lists: bool) -> list[Item]:
    """The inputs of a ``/predict`` body, checked; a ``RequestError`` says what is wrong.

    ``token_lists``: a non-empty list of tokens is an input too (a tagger's), each a
    string that is not empty or white space alone.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON: {err}") from None
    except RecursionError:
        raise RequestError(400, "the body is not valid JSON: nested too deeply") from None
    shape = '{"inputs": [...]}'
    if not isinstance(data, dict):
        raise RequestError(422, f"the body must be a JSON object {shape}, got {_kind(data)}")
    if "inputs" not in data:
        raise RequestError(422, f'the body has no "inputs": expected {shape}')
    if len(data) > 1:
        unknown = sorted(k for k in data if k != "inputs")
        raise RequestError(422, f"unknown field(s) {unknown}: expected {shape}")
    inputs = data["inputs"]
    if not isinstance(inputs, list):
        raise RequestError(422, f'"inputs" must be a list, got {_kind(inputs)}')
    if len(inputs) > limits.max_inputs:
        raise RequestError(413, f"{len(inputs)} inputs in one request, over the limit of "
                           f"{limits.max_inputs} (--max_inputs)")  # fmt: skip
    expected = "a string or a list of token strings" if token_lists else "a string"
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            chars = len(item)
            texts: Sequence[str] = (item,)
        elif token_lists and isinstance(item, list):
            if not item:
                raise RequestError(422, f"input {i} is an empty token list")
            for j, token in enumerate(item):
                if not isinstance(token, str):
                    raise RequestError(422, f"input {i}: token {j} must be a string, "
                                       f"got {_kind(token)}")  # fmt: skip
                if not token.strip():
                    raise RequestError(422, f"input {i}: token {j} is empty or white space")
            chars = sum(map(len, item)) + len(item) - 1
            texts = item
        else:
            raise RequestError(422, f"input {i} must be {expected}, got {_kind(item)}")
        if chars > limits.max_chars:
            raise RequestError(413, f"input {i} has {chars} characters, over the limit of "
                               f"{limits.max_chars} (--max_chars)")  # fmt: skip
        if not all(map(_is_utf8, texts)):
            raise RequestError(422, f"input {i} is not valid Unicode (a lone surrogate)")
    return inputs


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")  # fmt: skip


def _is_utf8(text: str) -> bool:
    """False for a string with a lone surrogate (from a JSON ``\\ud800`` escape)."""
    try:
        text.isascii() or text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON, as the responses are sent."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


#: the ``/predict`` body in the OpenAPI schema (the app reads the body itself).
PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "additionalProperties": False,
    "properties": {"inputs": {"type": "array", "items": {"anyOf": [
        {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}},
}}}}}  # fmt: skip


def internal_error_body(err: Exception) -> bytes:
    """The JSON body of a 500 for an error nobody expected (its type only: no details
    of the server reach the client), from ``PredictPath`` and FastAPI's handler alike."""
    return dumps({"error": f"internal error: {type(err).__name__}"})


def create_app(
    predictor: "Predictor", *, limits: Limits | None = None, max_batch_size: int = 128,
    max_wait_ms: float | None = None, threads: int | None = None, model: str = "",
    parallel: int = 1,
) -> "PredictPath":  # fmt: skip
    """The ASGI app that serves ``predictor`` (``seqnlp serve``): ``PredictPath`` in
    front of the FastAPI app (its ``app``) that answers everything else.

    Args:
        predictor: built once with every option (``seqnlp.load``), or a
            ``seqnlp.serve_process.PredictorProcess``; used by one thread.
        limits: characters per input and inputs per request (default ``Limits()``).
        max_batch_size, max_wait_ms: the micro-batcher's (``MicroBatcher``). The wait
            defaults to 0 for a predictor in other processes, which join the batches
            waiting in their pipes when a call ends (a request held here would only
            miss that call), and to 2 ms for one in this process.
        threads: torch's threads in the worker (a torch predictor; an ONNX Runtime one
            takes its threads when it is loaded). Default: one less than torch's count
            (at least 1): a core is left to the event loop, lest torch wait for a thread
            of its parallel region that the event loop has preempted.
        model: the model's path, shown by ``/health``.
        parallel: batches predicted at once by a predictor in this process (a thread
            each; ``parallel_batches``). A predictor in other processes
            (``seqnlp.serve_process``) gets ``IN_FLIGHT`` batches on their way per
            process instead, which the processes join.
    """
    from fastapi import FastAPI, Request, Response
    from starlette.exceptions import HTTPException

    from seqnlp import __version__
    from seqnlp.serve_process import IN_FLIGHT, PROCESS_PREDICTORS

    limits = limits or Limits()
    worker_init = None
    if hasattr(predictor, "network"):  # a torch predictor (ONNX Runtime's never imports torch)
        import torch

        threads = threads or max(1, torch.get_num_threads() - 1)
        worker_init = partial(torch.set_num_threads, threads)
    in_processes = isinstance(predictor, PROCESS_PREDICTORS)
    if max_wait_ms is None:
        max_wait_ms = 0.0 if in_processes else 2.0
    if in_processes:
        batcher = MicroBatcher(predictor.predict, max_batch_size, max_wait_ms,
                               parallel=IN_FLIGHT * len(predictor.pids),
                               submit=predictor.submit)  # fmt: skip
    else:
        batcher = MicroBatcher(predictor.predict, max_batch_size, max_wait_ms, worker_init,
                               parallel)  # fmt: skip
    stats = batcher.stats
    token_lists = predictor.task == "tagging" and not getattr(predictor, "documents", False)
    metadata = dumps(predictor.metadata())
    where = "process" if in_processes else "thread"

    def json_response(data: Any, status: int = 200) -> Response:
        return Response(dumps(data), status, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            logger.info("stopped after %d requests (%d inputs, %d batches, %d errors)",
                        stats.requests, stats.inputs, stats.batches, stats.errors)

    app = FastAPI(title="seqnlp", version=__version__, lifespan=lifespan,
                  summary=f"a {predictor.task} model: POST /predict {{'inputs': [...]}}")

    async def answer(length: str | None, receive: Receive) -> tuple[int, bytes]:
        """``/predict``'s status and JSON body for a request (its ``Content-Length``
        header and ASGI ``receive``)."""
        try:
            inputs = parse_inputs(await _read_body(length, receive, limits), limits, token_lists)
        except RequestError as err:
            stats.rejected += 1
            return err.status, dumps({"error": err.message})
        if not inputs:
            return 200, dumps({"outputs": []})
        try:
            records = await batcher.predict(inputs)
        except Exception as err:
            return 500, dumps({"error": f"prediction failed: {type(err).__name__}: {err}"})
        return 200, dumps({"outputs": records})

    @app.post("/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> Response:
        """One record per input, in order: ``{"outputs": [...]}``. (Answered by
        ``PredictPath`` before FastAPI routes it; declared here for the OpenAPI page.)"""
        status, body = await answer(request.headers.get("content-length"), request.receive)
        return Response(body, status, media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        """``ok`` and the counters: requests, inputs, batches, errors, pending; 503
        once the prediction process (``--predictor process``) has ended."""
        counters = {k: v for k, v in vars(stats).items() if k != "started"}
        if in_processes:  # the processes join the batches that wait for them
            counters["model_calls"] = predictor.calls
        ok = getattr(predictor, "alive", True)  # a prediction process may have died
        return json_response({"status": "ok" if ok else "the prediction process has ended",
                              "task": predictor.task, "model": model, "threads": threads,
                              "predictor": where, "max_batch_size": max_batch_size,
                              "max_wait_ms": max_wait_ms,
                              "uptime_s": round(time.monotonic() - stats.started, 1),
                              **counters}, 200 if ok else 503)  # fmt: skip

    @app.get("/metadata")
    async def get_metadata() -> Response:
        """The task, labels, prediction options, seqnlp version (and model card)."""
        return Response(metadata, media_type="application/json")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return Response(internal_error_body(exc), 500, media_type="application/json")

    return PredictPath(app, answer)


class PredictPath:
    """``POST /predict`` answered as a plain ASGI app, ahead of all of FastAPI (its
    server-error handler, exception middleware, router, route and request objects);
    every other request, and the lifespan, go on to ``app``.

    Under 64 clients FastAPI's layers were about two thirds of the server process's
    time (py-spy), and the answer itself (parsing, batching, JSON) a fifth: this is the
    one path that a loaded server takes thousands of times a second. An error that
    ``answer`` did not expect answers 500 with a JSON error, as FastAPI's handler would.

    Args:
        app: the rest of the ASGI stack.
        answer: the status and JSON body for a request's ``Content-Length`` header and
            ASGI ``receive``.
    """

    def __init__(
        self, app: Callable[..., Awaitable[None]],
        answer: Callable[[str | None, Receive], Awaitable[tuple[int, bytes]]],
    ) -> None:  # fmt: skip
        self.app = app
        self.answer = answer

    async def __call__(self, scope: dict[str, Any], receive: Receive,
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:  # fmt: skip
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        try:
            status, body = await self.answer(
                None if length is None else length.decode("latin-1"), receive)
        except _Disconnected:  # the client has gone: nobody to answer
            return
        except Exception as err:  # a bug: the request fails, the server goes on
            logger.exception("answering /predict failed")
            status, body = 500, internal_error_body(err)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    """The client went away before its request body had come."""


async def _read_body(length: str | None, receive: Receive, limits: Limits) -> bytes:
    """A request's body from its ASGI ``receive``, refused (413) past
    ``limits.max_body_bytes`` (at once where its ``Content-Length`` says so)."""
    limit = limits.max_body_bytes
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limits)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limits)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limits: Limits) -> RequestError:
    return RequestError(413, f"the body is over {limits.max_body_bytes} bytes, more than "
                        f"--max_inputs {limits.max_inputs} inputs of --max_chars "
                        f"{limits.max_chars} characters can take")  # fmt: skip


__all__ = ["Limits", "MicroBatcher", "PredictPath", "RequestError", "Stats", "create_app", "dumps",
           "parse_inputs"]  # fmt: skip
