"""Load benchmark of ``seqnlp serve``: micro-batching against one request at a time.

For a tagger and a classifier it starts the real server (``python -m seqnlp serve``)
on a free loopback port and sends a bounded number of ``POST /predict`` requests
(``--sentences_per_request`` sentences each; ``--requests``, and at least
``--requests_per_client`` per client at each level) from 1, 8 and 64 concurrent
clients (keep-alive connections of a small asyncio HTTP/1.1 client, in this process),
after a warm-up of each sentence once, 8 clients. It reports requests/s, sentences/s,
p50 / p99 latency and the server's CPU time per sentence (less sensitive than rates to
other processes on the machine). The reference is the same load on a server that
predicts one request at a time (``--max_batch_size 1 --max_wait_ms 0``), started beside
the batched one and loaded in turns with it (``--repeats`` rounds, the order
alternating), so that a change of the machine's speed during the run touches both;
and ``in_process``: ``predictor.predict`` on the same sentences in one call in this
process (the median of three calls, with the server's torch threads and with torch's
default: the faster), taking its turn among the loads at the highest level, the
servers idle. The machine's speed can change by a third within minutes (a shared
virtual machine), so each goal is judged by the median over the rounds of that
round's ratio. Goals at 64 clients: batching gives at least 3x the sentences/s of
one at a time, and tagging over HTTP at least half the sentences/s of in-process
prediction. Numbers, the goals marked met or not:

    SEQNLP_DATA=/work/shared/data python scripts/bench_serve.py \\
        --tagger runs/quickstart-ner/tb/version_0/checkpoints/best-epoch=01.ckpt \\
        --classifier runs/quickstart-sentiment/tb/version_0/checkpoints/best-epoch=01.ckpt \\
        --output serve_bench.json

With ``SEQNLP_DATA`` the sentences are CoNLL-2002 Spanish ``esp.testa`` (tagger) and
SST-2 dev (classifier), else the samples shipped in ``seqnlp/samples``. The models:
``python -m seqnlp fit recipes/quickstart/ner.yaml`` (and ``sentiment.yaml``);
without ``--tagger`` / ``--classifier`` the tiny test fixtures are used. Linux only
(``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints" / "v0.1.0"
GOAL_BATCHING, GOAL_IN_PROCESS = 3.0, 0.5


def tagging_sentences() -> tuple[str, list[str]]:
    """Raw sentences (tokens joined by spaces) from CoNLL-2002 esp.testa or the sample."""
    data = os.environ.get("SEQNLP_DATA")
    path = Path(data) / "conll2002" / "esp.testa" if data else None
    if path is None or not path.is_file():
        path = ROOT / "seqnlp" / "samples" / "ner" / "test.conll"
    sentences, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            tokens.append(line.split()[0])
        elif tokens:
            sentences.append(" ".join(tokens))
            tokens = []
    if tokens:
        sentences.append(" ".join(tokens))
    return str(path), [s for s in sentences if not s.startswith("-DOCSTART-")]


def classification_sentences() -> tuple[str, list[str]]:
    """Texts of SST-2 dev (``<label> <sentence>`` lines) or of the sentiment sample."""
    data = os.environ.get("SEQNLP_DATA")
    path = Path(data) / "sst2" / "stsa.binary.dev" if data else None
    if path is None or not path.is_file():
        path = ROOT / "seqnlp" / "samples" / "sentiment" / "test.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return str(path), [line.split(" ", 1)[1] for line in lines if " " in line]


# -- the server --------------------------------------------------------------------------


def start_server(model: str, log: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """``seqnlp serve MODEL --port 0``, and its URL once it listens."""
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "seqnlp", "serve", model, "--port", "0",
                                 *options], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 180
    while True:
        found = re.search(r"at http://(127\.0\.0\.1):(\d+)", log.read_text(errors="replace"))
        if found:
            return proc, f"{found.group(1)}:{found.group(2)}"
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# -- the clients -------------------------------------------------------------------------


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes
) -> bytes:
    """One keep-alive ``POST /predict``; the response body (status 200 required)."""
    writer.write(b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    payload = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {payload[:200]!r}")
    return payload


async def _load(address: str, bodies: list[bytes], sizes: list[int], clients: int) -> dict:
    """``clients`` connections sending ``bodies`` in turn; timings and rates."""
    host, port = address.split(":")
    latencies: list[float] = []
    following = iter(range(len(bodies)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in following:
                start = time.perf_counter()
                payload = await _post(reader, writer, address, bodies[i])
                latencies.append(time.perf_counter() - start)
                if len(json.loads(payload)["outputs"]) != sizes[i]:
                    raise RuntimeError("a response without one record per input")
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    ms = sorted(1000 * t for t in latencies)
    return {
        "clients": clients, "requests": len(bodies), "seconds": round(elapsed, 3),
        "requests_per_s": round(len(bodies) / elapsed, 1),
        "sentences_per_s": round(sum(sizes) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
    }  # fmt: skip


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU seconds so far of a process, and of its live children together
    (the server's prediction processes) (Linux ``/proc``)."""

    def own(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def descendants(pid: int) -> float:
        total = 0.0
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            for child in children.read_text().split():
                with contextlib.suppress(FileNotFoundError):  # ended meanwhile
                    total += own(int(child)) + descendants(int(child))
        return total

    return own(pid), descendants(pid)


def health(address: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(*address.split(":"))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        writer.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    return asyncio.run(get())


def bench_servers(
    model: str, requests: list[list[str]], levels: list[int], warmup: int, folder: Path,
    task: str, servers: dict[str, list[str]], repeats: int = 1, minimum: int = 0,
    per_client: int = 0, local: InProcess | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Start one server per entry of ``servers`` (its options), load each at each
    concurrency level ``repeats`` times (with the first ``minimum`` requests, or
    ``per_client`` per client where that is more), the servers in turns (the order
    alternating from one round to the next), so that what changes on the machine
    during the run falls on all of them alike; stop them. At the highest level,
    ``local`` (in-process prediction, the servers idle) takes its turn in each round
    too. Per server and level: the run of median sentences/s, with every run's rate
    in round order (``sentences_per_s_runs``); ``in_process``: each round's."""
    started = {name: start_server(model, folder / f"{task}-{name}.log", *options)
               for name, options in servers.items()}  # fmt: skip
    bodies = [json.dumps({"inputs": r}, ensure_ascii=False).encode() for r in requests]
    sizes = [len(r) for r in requests]
    results: dict[str, dict[str, Any]] = {name: {"options": o} for name, o in servers.items()}
    try:
        for name, (_, address) in started.items():  # the settings in force, as /health says
            said = health(address)
            results[name]["settings"] = {k: said.get(k) for k in (
                "predictor", "threads", "max_batch_size", "max_wait_ms")}
        # the warm-up: by default every distinct request once, so that the server is
        # measured in the steady state in which in-process prediction is (it predicts
        # the sentences once before the timed runs): the tagger's word-feature cache
        # holds their words
        count = len(bodies) if warmup < 0 else warmup
        for _, address in started.values():
            asyncio.run(_load(address, bodies[:count], sizes[:count], 8))
        names = list(servers)
        for clients in levels:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            turns = names + (["in_process"] if local and clients == max(levels) else [])
            for round_ in range(repeats):
                for name in turns if round_ % 2 == 0 else turns[::-1]:
                    if name == "in_process":
                        assert local is not None
                        local.measure()
                        continue
                    proc, address = started[name]
                    n = min(len(bodies), max(minimum, per_client * clients))
                    runs[name].append(_measured_load(proc.pid, address, bodies[:n], sizes[:n],
                                                     clients))  # fmt: skip
            for name in names:
                ranked = sorted(runs[name], key=lambda r: r["sentences_per_s"])
                result = ranked[len(ranked) // 2]
                result["sentences_per_s_runs"] = [r["sentences_per_s"] for r in runs[name]]
                results[name][str(clients)] = result
                print(f"  {name:<14} {clients:>3} clients: {result['requests_per_s']:>7.1f} "
                      f"req/s {result['sentences_per_s']:>7.1f} sent/s p50 "
                      f"{result['p50_ms']:>6.1f} ms p99 {result['p99_ms']:>7.1f} ms "
                      f"({result['inputs_per_batch']} inputs/batch)", file=sys.stderr)  # fmt: skip
    finally:
        for name, (proc, _) in started.items():
            results[name]["exit_status"] = stop_server(proc)
    return results


def _measured_load(
    pid: int, address: str, bodies: list[bytes], sizes: list[int], clients: int
) -> dict[str, Any]:
    """One load at ``clients``: ``_load``'s rates and latencies, the inputs per model
    call and the CPU time per sentence of the server, its prediction processes and
    this process (the load generator, which shares the machine with the server)."""
    before, (front, workers) = health(address), cpu_seconds(pid)
    client = time.process_time()
    result = asyncio.run(_load(address, bodies, sizes, clients))
    client = time.process_time() - client
    front_after, workers_after = cpu_seconds(pid)
    after = health(address)
    # a prediction process joins the batches waiting for it: count its calls
    key = "model_calls" if "model_calls" in after else "batches"
    n = sum(sizes)
    result["inputs_per_batch"] = round(n / max(after[key] - before[key], 1), 1)
    result["server_cpu_ms_per_sentence"] = round(
        1000 * (front_after - front + workers_after - workers) / n, 3)
    result["front_cpu_ms_per_sentence"] = round(1000 * (front_after - front) / n, 3)
    result["prediction_cpu_ms_per_sentence"] = round(1000 * (workers_after - workers) / n, 3)
    result["client_cpu_ms_per_sentence"] = round(1000 * client / n, 3)
    return result


class InProcess:
    """``predictor.predict`` on all the sentences in one call, the reference of the
    HTTP loads, measured in turns with them (``bench_servers``): each ``measure`` is a
    round, the median of three timed calls (after one untimed, in the first round)
    with each of ``thread_counts`` torch threads, the faster counting."""

    def __init__(
        self, model: str, sentences: list[str], batch_size: int, thread_counts: list[int]
    ) -> None:
        import seqnlp

        self.predictor = seqnlp.load(model, batch_size=batch_size)
        self.sentences, self.thread_counts = sentences, thread_counts
        self.rounds: list[dict[str, float]] = []

    def measure(self) -> None:
        import torch

        default, n = torch.get_num_threads(), len(self.sentences)
        result: dict[str, float] = {}
        try:
            for threads in self.thread_counts:
                torch.set_num_threads(threads)
                if not self.rounds:
                    self.predictor.predict(self.sentences)  # the warm-up, as the servers'
                times, cpu = [], time.process_time()
                for _ in range(3):
                    start = time.perf_counter()
                    self.predictor.predict(self.sentences)
                    times.append(time.perf_counter() - start)
                cpu = time.process_time() - cpu
                result[f"sentences_per_s_{threads}_threads"] = round(
                    n / statistics.median(times), 1)
                result[f"cpu_ms_per_sentence_{threads}_threads"] = round(1000 * cpu / (3 * n), 3)
        finally:
            torch.set_num_threads(default)
        result["sentences_per_s"] = max(
            v for k, v in result.items() if k.startswith("sentences_per_s_"))
        self.rounds.append(result)
        print(f"  in_process: {result['sentences_per_s']:>7.1f} sent/s", file=sys.stderr)

    def summary(self) -> dict[str, Any]:
        """The round of median sentences/s, with every round's rate in order."""
        ranked = sorted(self.rounds, key=lambda r: r["sentences_per_s"])
        return {"sentences": len(self.sentences), **ranked[len(ranked) // 2],
                "sentences_per_s_runs": [r["sentences_per_s"] for r in self.rounds]}


def bench_model(task: str, model: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    source, sentences = (tagging_sentences if task == "tagging" else classification_sentences)()
    k = args.sentences_per_request
    needed = max(args.requests, args.requests_per_client * max(args.clients)) * k
    pool = (sentences * (needed // len(sentences) + 1))[:needed]
    requests = [pool[i : i + k] for i in range(0, needed, k)]
    warmup = args.warmup if args.warmup >= 0 else min(len(requests), -(-len(sentences) // k))
    print(f"{task}: {model}, {len(sentences)} sentences of {source}, up to {len(requests)} "
          f"requests a load", file=sys.stderr)  # fmt: skip
    common = ["--batch_size", str(args.batch_size), "--threads", str(args.threads),
              "--predictor", args.predictor, "--workers", str(args.workers),
              "--parallel_batches", str(args.parallel_batches)]
    wait = [] if args.max_wait_ms is None else ["--max_wait_ms", str(args.max_wait_ms)]
    servers = {"batched": ["--max_batch_size", str(args.max_batch_size), *wait, *common],
               "one_at_a_time": ["--max_batch_size", "1", "--max_wait_ms", "0", *common]}
    from seqnlp.predict.base import loaded_objects_frozen

    local = InProcess(model, sentences, args.batch_size,
                      sorted({args.threads, args.default_threads}))  # fmt: skip
    # the loaded objects (the bench's own predictor, torch) out of the garbage
    # collector's rounds, as in `seqnlp predict` and the servers' prediction processes
    with loaded_objects_frozen():
        loads = bench_servers(model, requests, args.clients, warmup, folder, task, servers,
                              args.repeats, args.requests, args.requests_per_client,
                              local)  # fmt: skip
    batched, one = loads["batched"], loads["one_at_a_time"]
    top = str(max(args.clients))
    # each round's ratios (the contenders loaded in turns within it), their median
    rounds = zip(batched[top]["sentences_per_s_runs"], one[top]["sentences_per_s_runs"],
                 [r["sentences_per_s"] for r in local.rounds], strict=True)  # fmt: skip
    speedups, shares = zip(*((b / o, b / i) for b, o, i in rounds), strict=True)
    speedup, share = statistics.median(speedups), statistics.median(shares)
    goals = {f"batching_speedup_at_{top}": round(speedup, 2),
             f"batching_speedup_at_{top}_rounds": [round(x, 2) for x in speedups],
             f"batching_at_least_{GOAL_BATCHING:g}x": speedup >= GOAL_BATCHING,
             f"http_share_of_in_process_at_{top}": round(share, 3),
             f"http_share_of_in_process_at_{top}_rounds": [round(x, 3) for x in shares]}
    if task == "tagging":
        goals[f"http_at_least_{GOAL_IN_PROCESS:g}_of_in_process"] = share >= GOAL_IN_PROCESS
    return {"model": model, "data": source, "batched": batched, "one_at_a_time": one,
            "in_process": local.summary(), "goals": goals}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tagger", default=str(FIXTURES / "tagger_lstm_crf.ckpt"))
    p.add_argument("--classifier", default=str(FIXTURES / "classifier_lstm_last.ckpt"))
    p.add_argument("--requests", type=int, default=2000,
                   help="requests per load, at least (default 2000)")
    p.add_argument("--requests_per_client", type=int, default=150,
                   help="...and at least this many per client, so that a batched load lasts "
                   "long enough to measure (default 150: 9,600 requests at 64 clients)")
    p.add_argument("--sentences_per_request", type=int, default=1)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--repeats", type=int, default=1,
                   help="loads at each level, the median kept (default 1; 3 on a noisy "
                   "machine)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=-1,
                   help="requests before the loads (default -1: each sentence once)")
    p.add_argument("--batch_size", type=int, default=64, help="the predictor's (default 64)")
    p.add_argument("--max_batch_size", type=int, default=128, help="the batched server's")
    p.add_argument("--max_wait_ms", type=float, default=None,
                   help="the batched server's (default: the server's own, 0 with prediction "
                   "processes)")  # fmt: skip
    p.add_argument("--predictor", choices=["process", "thread"], default="process",
                   help="the servers' --predictor (default process, as `seqnlp serve`)")
    p.add_argument("--workers", type=int, default=1,
                   help="the servers' --workers (prediction processes; default 1)")
    p.add_argument("--parallel_batches", type=int, default=1,
                   help="the servers' --parallel_batches (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="the servers' torch threads (default: as `seqnlp serve`, one less "
                   "than the cores); in-process prediction is measured with these and with "
                   "torch's default, the faster counts")  # fmt: skip
    p.add_argument("--tasks", nargs="+", default=["tagging", "classification"],
                   choices=["tagging", "classification"])  # fmt: skip
    p.add_argument("--output", help="also write the JSON summary here")
    args = p.parse_args()
    import torch

    args.default_threads = torch.get_num_threads()
    args.threads = args.threads or max(1, args.default_threads - 1)
    summary: dict[str, Any] = {
        "cpus": os.cpu_count(), "torch_threads": args.default_threads,
        "server_threads": args.threads, "predictor": args.predictor, "workers": args.workers,
        "requests": args.requests, "requests_per_client": args.requests_per_client,
        "sentences_per_request": args.sentences_per_request,
        "repeats": args.repeats,
        "max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for task in args.tasks:
            model = args.tagger if task == "tagging" else args.classifier
            summary[task] = bench_model(task, model, args, Path(folder))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
