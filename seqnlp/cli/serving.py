"""``serve``: a model over HTTP (``seqnlp.serve``), one process, run by uvicorn.

Wiring only: the options are parsed, the address bound (a busy port fails before the
model is read), the predictor built once with every option, and the app run until
SIGTERM or Ctrl-C, which finish the requests in flight and exit 0. FastAPI and uvicorn
(``pip install 'seqnlp[serve]'``) are imported here only.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from collections.abc import Sequence
from typing import Any

from seqnlp.cli.inference import _positive_int

logger = logging.getLogger("seqnlp.serve")


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqnlp serve",
        description="Serve a model as JSON over HTTP: POST /predict {\"inputs\": [...]}, "
        "GET /health, GET /metadata (README: Serving).",
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="an exported model folder or a checkpoint")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=_port, default=8080, help="default 8080; 0: any free port")
    batching = p.add_argument_group("micro-batching and limits")
    batching.add_argument(
        "--max_batch_size", type=_positive_int, default=128,
        help="inputs of waiting requests predicted in one call, at most (default 128; 1: "
        "one request at a time)",
    )  # fmt: skip
    batching.add_argument(
        "--max_wait_ms", type=float, default=None,
        help="how long a request waits for others to join its batch, while requests come "
        "concurrently (default: 0 with prediction processes, which join the batches "
        "waiting for them; 2 with --predictor thread; a lone client's requests never "
        "wait)",
    )  # fmt: skip
    batching.add_argument("--max_chars", type=_positive_int, default=10_000,
                          help="characters per input (default 10000; over it: 413)")
    batching.add_argument("--max_inputs", type=_positive_int, default=256,
                          help="inputs per request (default 256; over it: 413)")
    predicting = p.add_argument_group("prediction (as `seqnlp predict`)")
    predicting.add_argument("--batch_size", type=_positive_int, default=64,
                            help="inputs per network batch (default 64)")
    predicting.add_argument("--device", default="cpu", help="cpu, cuda:0, ... (default cpu)")
    predicting.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                            help="onnx: an exported folder's ONNX graphs in ONNX Runtime "
                            "(`seqnlp export --format onnx`); torch is not imported")
    predicting.add_argument("--quantize", choices=["int8"], default=None,
                            help="int8 dynamic quantization (CPU only)")
    predicting.add_argument("--threads", type=_positive_int, default=None,
                            help="torch's threads for prediction (default: one less than the "
                            "CPU cores, at least 1: a core is left to the HTTP event loop)")
    predicting.add_argument(
        "--predictor", choices=["process", "thread"], default="process",
        help="process (default): the model in a child process, beside the HTTP event loop "
        "rather than taking turns with it; thread: in the server's own process",
    )  # fmt: skip
    predicting.add_argument(
        "--workers", type=_positive_int, default=1,
        help="prediction processes (--predictor process), each with a copy of the model, "
        "each predicting one batch at a time (default 1)",
    )  # fmt: skip
    predicting.add_argument("--parallel_batches", type=_positive_int, default=1,
                            help="CPU: network batches predicted at once in threads")
    predicting.add_argument("--no_confidence", dest="confidence", action="store_false",
                            default=None, help="tagging: skip entity confidences")
    predicting.add_argument("--n_best", type=_positive_int, default=None,
                            help="tagging (CRF): N most probable tag sequences; "
                            "translation: N best translations")  # fmt: skip
    predicting.add_argument("--pretokenized", action="store_true", default=None,
                            help="tagging, classification: strings are tokens separated by "
                            "white space already")  # fmt: skip
    predicting.add_argument("--documents", action="store_true", default=None,
                            help="tagging: each string is a document, split into sentences")
    predicting.add_argument("--beam_size", type=_positive_int, default=None,
                            help="translation: beam size (default 5; 1: greedy)")
    predicting.add_argument("--length_penalty", type=float, default=None,
                            help="translation: GNMT length-penalty alpha")
    return p


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening); ValueError if it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]  # fmt: skip
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: cannot be resolved ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not a port in use
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def server_parts() -> tuple[str, str]:
    """uvicorn's HTTP parser and event loop: httptools and uvloop (C; the ``serve``
    extra installs both) where they import, else uvicorn's pure-Python h11 parser and
    asyncio's own loop, which work alike but cost more CPU per request. The startup
    line names the two in use."""
    parts = []
    for module, fast, slow in (("httptools", "httptools", "h11"), ("uvloop", "uvloop", "asyncio")):
        try:
            __import__(module)
        except ImportError:
            parts.append(slow)
        else:
            parts.append(fast)
    return parts[0], parts[1]


def run_serve(argv: Sequence[str]) -> None:
    """``seqnlp serve``: bind, load the model once, serve until SIGTERM / Ctrl-C (exit 0).

    Input errors (model, options, address, FastAPI missing) are ValueErrors: one line
    ``seqnlp: error: ...`` and exit status 2 (``seqnlp.cli.main``)."""
    args = serve_parser().parse_args(argv)
    if args.max_wait_ms is not None and args.max_wait_ms < 0:
        raise ValueError(f"--max_wait_ms must be at least 0, got {args.max_wait_ms}")
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise ValueError(f"serve needs FastAPI and uvicorn ({err.name or err} is missing): "
                         "pip install 'seqnlp[serve]'") from None  # fmt: skip
    from seqnlp import load
    from seqnlp.predict.base import loaded_objects_frozen
    from seqnlp.serve import Limits, create_app
    from seqnlp.serve_process import PROCESS_PREDICTORS, PredictorPool, PredictorProcess

    sock = bind(args.host, args.port)
    predictor: Any = None
    try:
        options = {name: getattr(args, name) for name in (
            "confidence", "n_best", "pretokenized", "documents", "beam_size", "length_penalty")}
        options = {k: v for k, v in options.items() if v is not None}
        threads = args.threads
        if args.runtime == "onnx":  # ONNX Runtime's threads are set when it is loaded
            threads = args.threads or max(1, (os.cpu_count() or 2) - 1)
            options.update(runtime="onnx", threads=threads)
        options.update(device=args.device, quantize=args.quantize, batch_size=args.batch_size,
                       parallel_batches=args.parallel_batches)  # fmt: skip
        if args.workers > 1 and args.predictor != "process":
            raise ValueError("--workers runs prediction processes: it needs --predictor process")
        if args.predictor == "process":
            # the cores less one (left to the event loop) shared by the workers
            threads = threads or max(1, ((os.cpu_count() or 2) - 1) // args.workers)
            # the processes join the batches waiting for them up to --max_batch_size
            merge = args.max_batch_size
            predictor = (PredictorPool(args.model, options, threads, args.workers, merge)
                         if args.workers > 1
                         else PredictorProcess(args.model, options, threads, merge))
        else:
            predictor = load(args.model, **options)
        app = create_app(predictor, limits=Limits(args.max_chars, args.max_inputs),
                         max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                         threads=threads, model=args.model, parallel=args.workers)  # fmt: skip
        http, loop = server_parts()
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                proxy_headers=False, http=http, loop=loop)  # fmt: skip
        server = uvicorn.Server(config)
        sock.listen(config.backlog)  # connections wait from now on; none is refused
    except BaseException:
        sock.close()
        if isinstance(predictor, PROCESS_PREDICTORS):
            predictor.close()
        raise
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    where = "in this process"
    if isinstance(predictor, PROCESS_PREDICTORS):
        pids = predictor.pids
        where = f"in process{'es' if len(pids) > 1 else ''} {', '.join(map(str, pids))}"
    logger.info("serving the %s model %s at %s (POST /predict, GET /health, GET /metadata; "
                "HTTP parser %s, event loop %s; the model %s)", predictor.task, args.model, url,
                http, loop, where)  # fmt: skip
    # uvicorn turns SIGTERM and SIGINT into a graceful shutdown (requests in flight are
    # answered), then sends the signal again to the handler it found: this one records
    # it, so that the command ends normally, exit status 0.
    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:  # the app, its libraries and (--predictor thread) the model: out of gc's rounds
        with loaded_objects_frozen():
            server.run(sockets=[sock])
    finally:  # after the requests in flight
        if isinstance(predictor, PROCESS_PREDICTORS):
            predictor.close()
    if not server.started:
        raise SystemExit(3)  # the app did not start; uvicorn said why
