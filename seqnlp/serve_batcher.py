"""Micro-batching for ``seqnlp serve``: the inputs of requests that arrive together
go to the predictor in one call, and each request gets its own records back.

``MicroBatcher`` runs in the server's event loop. It calls a predictor in this process
in worker threads (torch has one caller at a time), or, where the predictor is in
other processes (``seqnlp.serve_process``), submits the batches to them, several on
their way at once. If a joined call fails, each request is predicted alone, so that a
bad input fails its own request only.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]
Item = str | list[str]
logger = logging.getLogger("seqnlp.serve")


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
    batches: int = 0  # batches sent to the predictor (a prediction process may join them)
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
        if self.submit_fn is None:  # a predictor in this process: worker threads call it
            self._executor = ThreadPoolExecutor(self.parallel, "seqnlp-predict",
                                                self.worker_init)  # fmt: skip
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


__all__ = ["MicroBatcher", "Stats"]
