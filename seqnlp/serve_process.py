"""A predictor in a process of its own, for ``seqnlp serve``.

In one process, the HTTP event loop and the predictor's Python (tokenizing, collating,
the CRF's loops, building records) take turns holding one interpreter lock, so a busy
server runs about one core of Python however many cores it has. ``PredictorProcess``
loads the model in a child process and gives the server ``submit`` (and ``predict``),
which send the inputs over a pipe: the event loop and the model then run side by side,
each with its own lock, and the server process never imports torch.

Several batches may be on their way at once (``submit`` returns a future; a reader
thread answers it). The child predicts the batches waiting in its pipe as one call
(up to ``merge_limit`` inputs) and answers each batch on its own, so it goes from one
call to the next without waiting for the server: when a call ends, the requests that
came meanwhile are already there. If a joined call fails, the child predicts each of
its batches alone, so that a bad batch fails only itself.

The child ignores SIGINT and SIGTERM: the server finishes the requests in flight
before it stops the child (``close``). If the server process dies, the child reads
the end of its pipe and exits.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import threading
from collections import deque
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

#: seconds ``close`` waits for the child to stop before it is terminated.
STOP_TIMEOUT = 10.0
#: batches a server keeps on their way to each prediction process (``seqnlp serve``):
#: enough that the child finds the next ones in its pipe when a call ends.
IN_FLIGHT = 8


class PredictorProcess:
    """``seqnlp.load(model, **options)`` in a child process, with the predictor's
    ``predict``, ``task``, ``documents`` and ``metadata()``, and ``submit``.

    Args:
        model: an exported folder, ``hf://ORG/NAME`` or a checkpoint.
        options: ``seqnlp.load``'s keyword arguments.
        threads: torch's threads in the child (a torch predictor; ONNX Runtime takes
            ``options["threads"]``); None leaves torch's default.
        merge_limit: the most inputs the child joins into one call from the batches
            waiting in its pipe (a larger batch is predicted alone); 1 joins none.

    Raises:
        ValueError: in one line, where the model cannot be loaded (the child's error).
    """

    def __init__(
        self, model: str, options: dict[str, Any], threads: int | None = None,
        merge_limit: int = 128,
    ) -> None:  # fmt: skip
        if merge_limit < 1:
            raise ValueError(f"merge_limit must be at least 1, got {merge_limit}")
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child, model, options, threads, merge_limit),
            name="seqnlp-predict", daemon=True,
        )  # fmt: skip
        self._process.start()
        child.close()
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            self._process.join()
            raise ValueError(f"the prediction process ended while loading {model} (exit "
                             f"status {self._process.exitcode})") from None  # fmt: skip
        if kind == "error":
            self._process.join()
            raise ValueError(payload)
        self.task: str = payload["task"]
        self.documents: bool = payload["documents"]
        self.threads: int | None = payload["threads"]
        self.pid: int = payload["pid"]
        self._metadata: dict[str, Any] = payload["metadata"]
        self._ids = itertools.count()
        self._lock = threading.Lock()  # guards _waiting, _ended and the inputs counts
        self._waiting: dict[int, tuple[Future[list[Any]], int]] = {}
        self._ended = False
        self.inputs_in_flight = 0
        self.calls = 0  # the child's predict calls (joined batches count once)
        self._last_call = -1
        # the pipe is written by a thread of its own: a large batch must not block the
        # caller (the event loop) while the child is busy and the pipe full
        self._outbox: queue.SimpleQueue[tuple[str, int, Any] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="seqnlp-predict-send",
                                        daemon=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read, name="seqnlp-predict-receive",
                                        daemon=True)  # fmt: skip
        self._writer.start()
        self._reader.start()

    @property
    def pids(self) -> list[int]:
        """The child's pid, as a list (as ``PredictorPool.pids``)."""
        return [self.pid]

    def metadata(self) -> dict[str, Any]:
        return self._metadata

    @property
    def alive(self) -> bool:
        """Whether the child still runs (``/health`` answers 503 once it has gone)."""
        return self._process.is_alive()

    def submit(self, inputs: list[Any]) -> Future[list[Any]]:
        """The child's ``predict(inputs)``, as a future: its records, or its exception
        (``RuntimeError`` when the child has gone). Returns at once."""
        future: Future[list[Any]] = Future()
        with self._lock:
            if self._ended:
                future.set_exception(self._gone())
                return future
            key = next(self._ids)
            self._waiting[key] = (future, len(inputs))
            self.inputs_in_flight += len(inputs)
        self._outbox.put(("predict", key, inputs))
        return future

    def predict(self, inputs: list[Any]) -> list[Any]:
        """The child's ``predict(inputs)``; its exception re-raised here, or
        ``RuntimeError`` when the child has gone."""
        return self.submit(inputs).result()

    def _write(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._conn.send(message)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self._end()
                return

    def _read(self) -> None:
        while True:
            try:
                kind, key, payload, call = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future, size = self._waiting.pop(key)
                self.inputs_in_flight -= size
                if call != self._last_call:
                    self._last_call = call
                    self.calls += 1
            if kind == "error":
                future.set_exception(payload)
            else:
                future.set_result(payload)
        self._end()

    def _end(self) -> None:
        """The child has gone: fail what waits for it, and whatever comes later."""
        with self._lock:
            self._ended = True
            waiting = [future for future, _ in self._waiting.values()]
            self._waiting.clear()
            self.inputs_in_flight = 0
        if waiting:
            self._process.join(1.0)  # for its exit status
        for future in waiting:
            if not future.done():
                future.set_exception(self._gone())

    def _gone(self) -> RuntimeError:
        return RuntimeError(f"the prediction process (pid {self.pid}) has ended (exit "
                            f"status {self._process.exitcode})")  # fmt: skip

    def close(self) -> None:
        """Stop the child (after the batches sent before), at once if it does not stop;
        a later ``submit`` fails at once."""
        with self._lock:
            self._ended = True
        self._outbox.put(("stop", -1, None))
        self._outbox.put(None)
        self._writer.join(STOP_TIMEOUT)
        self._process.join(STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._reader.join(STOP_TIMEOUT)
        self._conn.close()


def _child(
    conn: Connection, model: str, options: dict[str, Any], threads: int | None,
    merge_limit: int,
) -> None:  # fmt: skip
    """The child: load, say ready (or why not), then answer the batches in its pipe,
    joining those that wait, until ``stop`` or the end of the pipe."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # the server decides when this stops
        signal.signal(sig, signal.SIG_IGN)
    try:
        if threads and options.get("runtime") != "onnx":
            import torch

            torch.set_num_threads(threads)
        from seqnlp import load

        predictor = load(model, **options)
    except Exception as err:  # one line for the server's error message
        conn.send(("error", str(err).split("\n")[0] or type(err).__name__))
        return
    from seqnlp.predict.base import loaded_objects_frozen

    conn.send(("ready", {
        "task": predictor.task, "documents": bool(getattr(predictor, "documents", False)),
        "threads": threads, "pid": os.getpid(), "metadata": predictor.metadata(),
    }))  # fmt: skip
    with loaded_objects_frozen():  # the model and torch: out of gc's rounds
        _serve(conn, predictor, merge_limit)


def _serve(conn: Connection, predictor: Any, merge_limit: int) -> None:
    """Answer the server's batches, joining those waiting, until it says stop or goes."""
    waiting: deque[tuple[str, int, Any]] = deque()
    calls = itertools.count()
    while True:
        try:
            if not waiting:
                waiting.append(conn.recv())
            while conn.poll():  # what came while the last call ran
                waiting.append(conn.recv())
        except (EOFError, OSError):  # the server has gone
            return
        if waiting[0][0] == "stop":
            return
        joined = [waiting.popleft()]
        size = len(joined[0][2])
        while waiting and waiting[0][0] == "predict" and size + len(waiting[0][2]) <= merge_limit:
            joined.append(waiting.popleft())
            size += len(joined[-1][2])
        _answer(conn, predictor, joined, calls)


def _answer(
    conn: Connection, predictor: Any, joined: list[tuple[str, int, Any]],
    calls: itertools.count[int],
) -> None:  # fmt: skip
    """Predict the ``joined`` batches in one call and send each its records, with the
    call's number (from ``calls``); if the call fails, predict each batch alone (a
    batch alone that fails is sent its error)."""
    call = next(calls)
    try:
        records = predictor.predict([item for _, _, inputs in joined for item in inputs])
    except Exception as err:
        if len(joined) == 1:
            conn.send(("error", joined[0][1], _picklable(err), call))
        else:  # each alone: a bad batch fails itself only
            for batch in joined:
                _answer(conn, predictor, [batch], calls)
        return
    start = 0
    for _, key, inputs in joined:
        conn.send(("records", key, records[start : start + len(inputs)], call))
        start += len(inputs)


def _picklable(err: Exception) -> Exception:
    """``err`` if it crosses the pipe intact, else a ``RuntimeError`` that says it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


class PredictorPool:
    """Several ``PredictorProcess``es of one model (``seqnlp serve --workers N``):
    ``submit`` gives each batch to the process with the fewest inputs on their way, so
    N calls run at once on N cores, at the cost of N copies of the model.

    Args:
        model, options, threads, merge_limit: as ``PredictorProcess`` (for each).
        workers: the number of processes (at least 2; one is a ``PredictorProcess``).
    """

    def __init__(
        self, model: str, options: dict[str, Any], threads: int | None, workers: int,
        merge_limit: int = 128,
    ) -> None:  # fmt: skip
        if workers < 2:
            raise ValueError(f"a pool needs at least 2 workers, got {workers}")
        self.workers: list[PredictorProcess] = []
        try:
            for _ in range(workers):
                self.workers.append(PredictorProcess(model, options, threads, merge_limit))
        except BaseException:
            self.close()
            raise
        first = self.workers[0]
        self.task, self.documents, self.threads = first.task, first.documents, first.threads
        self.pids = [w.pid for w in self.workers]
        self._lock = threading.Lock()

    def metadata(self) -> dict[str, Any]:
        return self.workers[0].metadata()

    @property
    def alive(self) -> bool:
        """Whether every process still runs."""
        return all(w.alive for w in self.workers)

    @property
    def calls(self) -> int:
        """The processes' predict calls, together."""
        return sum(w.calls for w in self.workers)

    def submit(self, inputs: list[Any]) -> Future[list[Any]]:
        """``submit`` on the process with the fewest inputs on their way."""
        with self._lock:  # one choice at a time, so that two never pick the same idle one
            worker = min(self.workers, key=lambda w: w.inputs_in_flight)
            return worker.submit(inputs)

    def predict(self, inputs: list[Any]) -> list[Any]:
        return self.submit(inputs).result()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


#: the predictors that run the model in child processes: ``close`` them, ``pids`` names them
PROCESS_PREDICTORS = (PredictorProcess, PredictorPool)
