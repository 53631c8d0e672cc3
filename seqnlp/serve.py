"""HTTP serving: one predictor behind FastAPI, requests micro-batched.

``create_app(predictor)`` serves ``POST /predict`` (``{"inputs": [...]}`` in,
``{"outputs": [...]}`` out: the records of ``predictor.predict(inputs)``, in order, as
``seqnlp predict`` writes them), ``GET /health`` (status and counters) and ``GET
/metadata`` (``predictor.metadata()``). A ``MicroBatcher`` joins the inputs of the
requests that arrive together into one ``predict`` call in its one worker thread (torch
has one caller at a time) and gives each request its slice; if a joined call fails,
each request is predicted alone, so that a bad input fails its own request only (500).
Bad bodies never reach the predictor: 400 (not JSON), 413 (over a limit, named), 422
(ill-typed), each ``{"error": "..."}``. ``seqnlp serve`` (``seqnlp.cli.serving``) runs
the app with uvicorn; FastAPI is imported only when an app is built.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the endpoints' annotations are evaluated by FastAPI: no __future__
    from fastapi import FastAPI, Request

    from seqnlp.predict import Predictor

Record = dict[str, Any]
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


@dataclass
class _Pending:
    """A request waiting for its records: its inputs, arrival time and future."""

    inputs: list[Item]
    arrived: float
    future: asyncio.Future[list[Record]]


@dataclass
class Stats:
    """Counters shown by ``/health``."""

    requests: int = 0  # answered by the predictor (200)
    inputs: int = 0
    batches: int = 0  # predictor.predict calls
    errors: int = 0  # requests answered 500
    rejected: int = 0  # requests answered 4xx
    pending: int = 0  # requests queued or being predicted
    largest_batch: int = 0
    started: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Joins the inputs of requests that arrive together into one ``predict`` call.

    Args:
        predict: inputs in, one record per input out (``Predictor.predict``); called in
            one worker thread, one call at a time.
        max_batch_size: inputs per call at most (a larger request is predicted alone);
            1 predicts one request at a time.
        max_wait_ms: how long the first request of a batch waits for others, while
            requests come concurrently.
        worker_init: called once in the worker thread before its first call (torch's
            thread count, which is per thread under OpenMP).
        parallel: batches on their way at once: each in a worker thread of its own
            (``predict`` must then take that many calls at once), or, with ``submit``,
            sent to the prediction processes.
        submit: where the predictor is in other processes (``seqnlp.serve_process``):
            inputs in, a ``concurrent.futures.Future`` of their records out, at once;
            used instead of ``predict`` in a worker thread.
    """

    def __init__(
        self, predict: Callable[[list[Item]], list[Record]], max_batch_size: int = 128,
        max_wait_ms: float = 2.0, worker_init: Callable[[], object] | None = None,
        parallel: int = 1, submit: Callable[[list[Item]], "Future[list[Record]]"] | None = None,
    ) -> None:  # fmt: skip
        if max_batch_size < 1 or max_wait_ms < 0 or parallel < 1:
            raise ValueError(f"max_batch_size and parallel must be >= 1 and max_wait_ms >= 0, "
                             f"got {max_batch_size}, {parallel} and {max_wait_ms}")  # fmt: skip
        self.parallel = parallel
        self.predict_fn = predict
        self.submit_fn = submit
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.worker_init = worker_init
        self.stats = Stats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._held: _Pending | None = None  # taken from the queue, for the next batch
        self._concurrent = False  # the last batch joined several requests
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the batching loop and its worker thread (in the server's event loop)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(self.parallel, "seqnlp-predict", self.worker_init)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop (after the server has answered its requests) and the thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def predict(self, inputs: list[Item]) -> list[Record]:
        """The records of ``inputs``, predicted with those of other waiting requests."""
        assert self._queue is not None, "start() the batcher first"
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, loop.time(), loop.create_future())
        self.stats.pending += 1
        try:
            self._queue.put_nowait(pending)
            return await pending.future
        finally:
            self.stats.pending -= 1

    async def _loop(self) -> None:
        """Take the next batch whenever one of the ``parallel`` slots is free."""
        slots = asyncio.Semaphore(self.parallel)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                batch = await self._next_batch()
                task = asyncio.create_task(self._guarded(batch, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:  # stopped: nothing should be in flight, but leave nothing behind
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _guarded(self, batch: list[_Pending], slots: asyncio.Semaphore) -> None:
        try:
            await self._run(batch)
        except Exception as err:  # a bug here must not leave requests waiting forever
            logger.exception("batching failed")
            for pending in batch:
                _settle(pending, error=err)
        finally:
            slots.release()

    async def _next_batch(self) -> list[_Pending]:
        """The first waiting request and those that join it: up to ``max_batch_size``
        inputs, until ``max_wait`` after the first arrived. It waits only while requests
        come concurrently (the previous batch joined several): a lone client's requests
        are predicted at once."""
        assert self._queue is not None
        first = self._held if self._held is not None else await self._queue.get()
        self._held = None
        batch, size = [first], len(first.inputs)
        deadline = first.arrived + (self.max_wait if self._concurrent else 0.0)
        loop = asyncio.get_running_loop()
        while size < self.max_batch_size:
            try:
                pending = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if size + len(pending.inputs) > self.max_batch_size:
                self._held = pending
                break
            batch.append(pending)
            size += len(pending.inputs)
        self._concurrent = len(batch) > 1
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        """Predict a batch in the worker thread and answer each of its requests; if the
        joined call fails, predict each request alone."""
        batch = [pending for pending in batch if not pending.future.done()]  # not gone
        if not batch:
            return
        inputs = [item for pending in batch for item in pending.inputs]
        try:
            records = await self._call(inputs)
        except Exception as err:
            if len(batch) == 1:
                logger.error("prediction failed: %s: %s", type(err).__name__, err)
                self.stats.errors += 1
                _settle(batch[0], error=err)
                return
            for pending in batch:
                await self._run([pending])
            return
        start = 0
        for pending in batch:
            end = start + len(pending.inputs)
            _settle(pending, records[start:end])
            start = end
        self.stats.requests += len(batch)
        self.stats.inputs += len(inputs)

    async def _call(self, inputs: list[Item]) -> list[Record]:
        loop = asyncio.get_running_loop()
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(inputs))
        if self.submit_fn is not None:
            records = await asyncio.wrap_future(self.submit_fn(inputs))
        else:
            records = await loop.run_in_executor(self._executor, self.predict_fn, inputs)
        if len(records) != len(inputs):
            raise RuntimeError(f"the predictor gave {len(records)} records for {len(inputs)} "
                               "inputs")  # fmt: skip
        return records


def _settle(
    pending: _Pending, records: list[Record] | None = None, error: Exception | None = None
) -> None:
    """Answer a waiting request, unless it has gone (its client disconnected)."""
    if not pending.future.done():
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(records or [])


#: the ``/predict`` body in the OpenAPI schema (the app reads the body itself).
PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "additionalProperties": False,
    "properties": {"inputs": {"type": "array", "items": {"anyOf": [
        {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}},
}}}}}  # fmt: skip


def create_app(
    predictor: "Predictor", *, limits: Limits | None = None, max_batch_size: int = 128,
    max_wait_ms: float = 2.0, threads: int | None = None, model: str = "", parallel: int = 1,
) -> "FastAPI":  # fmt: skip
    """The FastAPI app that serves ``predictor`` (``seqnlp serve``).

    Args:
        predictor: built once with every option (``seqnlp.load``), or a
            ``seqnlp.serve_process.PredictorProcess``; used by one thread.
        limits: characters per input and inputs per request (default ``Limits()``).
        max_batch_size, max_wait_ms: the micro-batcher's (``MicroBatcher``).
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

    @app.post("/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> Response:
        """One record per input, in order: ``{"outputs": [...]}``."""
        try:
            inputs = parse_inputs(await _read_body(request, limits), limits, token_lists)
        except RequestError as err:
            stats.rejected += 1
            return json_response({"error": err.message}, err.status)
        if not inputs:
            return json_response({"outputs": []})
        try:
            records = await batcher.predict(inputs)
        except Exception as err:
            return json_response({"error": f"prediction failed: {type(err).__name__}: {err}"},
                                 500)  # fmt: skip
        return json_response({"outputs": records})

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
                              "predictor": where,
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
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)

    app.state.batcher = batcher
    return app


async def _read_body(request: "Request", limits: Limits) -> bytes:
    """The request's body, refused (413) past ``limits.max_body_bytes``."""
    limit = limits.max_body_bytes
    too_large = RequestError(413, f"the body is over {limit} bytes, more than --max_inputs "
                             f"{limits.max_inputs} inputs of --max_chars {limits.max_chars} "
                             "characters can take")  # fmt: skip
    length = request.headers.get("content-length")
    if length is not None and length.isdigit():
        if int(length) > limit:
            raise too_large
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["Limits", "MicroBatcher", "RequestError", "Stats", "create_app", "dumps",
           "parse_inputs"]  # fmt: skip
