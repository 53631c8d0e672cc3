"""A predictor in a process of its own, for ``seqnlp serve``.

In one process, the HTTP event loop and the predictor's Python (tokenizing, collating,
the CRF's loops, building records) take turns holding one interpreter lock, so a busy
server runs about one core of Python however many cores it has. ``PredictorProcess``
loads the model in a child process and gives the server a ``predict`` that sends the
inputs over a pipe and waits for the records: the event loop and the model then run
side by side, each with its own lock, and the server process never imports torch.

The child ignores SIGINT and SIGTERM: the server finishes the requests in flight
before it stops the child (``close``). If the server process dies, the child reads
the end of its pipe and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

#: seconds ``close`` waits for the child to stop before it is terminated.
STOP_TIMEOUT = 10.0


class PredictorProcess:
    """``seqnlp.load(model, **options)`` in a child process, with the predictor's
    ``predict``, ``task``, ``documents`` and ``metadata()``.

    Args:
        model: an exported folder, ``hf://ORG/NAME`` or a checkpoint.
        options: ``seqnlp.load``'s keyword arguments.
        threads: torch's threads in the child (a torch predictor; ONNX Runtime takes
            ``options["threads"]``); None leaves torch's default.

    Raises:
        ValueError: in one line, where the model cannot be loaded (the child's error).
    """

    def __init__(self, model: str, options: dict[str, Any], threads: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child, model, options, threads), name="seqnlp-predict",
            daemon=True,
        )  # fmt: skip
        self._process.start()
        child.close()
        self._lock = threading.Lock()  # one request on the pipe at a time
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

    def predict(self, inputs: list[Any]) -> list[Any]:
        """The child's ``predict(inputs)``; its exception re-raised here, or
        ``RuntimeError`` when the child has gone."""
        with self._lock:
            try:
                self._conn.send(("predict", inputs))
                kind, payload = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                raise RuntimeError(f"the prediction process (pid {self.pid}) has ended (exit "
                                   f"status {self._process.exitcode})") from None  # fmt: skip
        if kind == "error":
            raise payload
        return payload

    def close(self) -> None:
        """Stop the child (after the requests in flight), at once if it does not stop."""
        with self._lock:
            with contextlib.suppress(OSError):  # the child may be gone already
                self._conn.send(("stop", None))
            self._process.join(STOP_TIMEOUT)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
            self._conn.close()


def _child(conn: Connection, model: str, options: dict[str, Any], threads: int | None) -> None:
    """The child: load, say ready (or why not), then answer ``predict`` until ``stop``
    or the end of the pipe."""
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
    conn.send(("ready", {
        "task": predictor.task, "documents": bool(getattr(predictor, "documents", False)),
        "threads": threads, "pid": os.getpid(), "metadata": predictor.metadata(),
    }))  # fmt: skip
    while True:
        try:
            kind, inputs = conn.recv()
        except (EOFError, OSError):  # the server has gone
            return
        if kind == "stop":
            return
        try:
            conn.send(("records", predictor.predict(inputs)))
        except Exception as err:
            conn.send(("error", _picklable(err)))


def _picklable(err: Exception) -> Exception:
    """``err`` if it crosses the pipe intact, else a ``RuntimeError`` that says it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


class PredictorPool:
    """Several ``PredictorProcess``es of one model, one batch each at a time (``seqnlp
    serve --workers N``): ``predict`` takes a free one, so N batches run at once on N
    cores, at the cost of N copies of the model.

    Args:
        model, options, threads: as ``PredictorProcess`` (``threads`` for each).
        workers: the number of processes (at least 2; one is a ``PredictorProcess``).
    """

    def __init__(
        self, model: str, options: dict[str, Any], threads: int | None, workers: int
    ) -> None:
        if workers < 2:
            raise ValueError(f"a pool needs at least 2 workers, got {workers}")
        self.workers: list[PredictorProcess] = []
        try:
            for _ in range(workers):
                self.workers.append(PredictorProcess(model, options, threads))
        except BaseException:
            self.close()
            raise
        first = self.workers[0]
        self.task, self.documents, self.threads = first.task, first.documents, first.threads
        self.pids = [w.pid for w in self.workers]
        self._free: queue.SimpleQueue[PredictorProcess] = queue.SimpleQueue()
        for worker in self.workers:
            self._free.put(worker)

    def metadata(self) -> dict[str, Any]:
        return self.workers[0].metadata()

    @property
    def alive(self) -> bool:
        """Whether every process still runs."""
        return all(w.alive for w in self.workers)

    def predict(self, inputs: list[Any]) -> list[Any]:
        """``predict`` on a free process (waits for one)."""
        worker = self._free.get()
        try:
            return worker.predict(inputs)
        finally:
            self._free.put(worker)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


#: the predictors that run the model in child processes: ``close`` them, ``pids`` names them
PROCESS_PREDICTORS = (PredictorProcess, PredictorPool)
