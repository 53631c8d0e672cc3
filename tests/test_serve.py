"""``seqnlp serve``: the real server, started as a subprocess on a free loopback port,
answered over HTTP; records equal the in-process predictor's, bad input answers 4xx,
concurrent requests are batched, SIGTERM answers the requests in flight and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import seqnlp  # noqa: E402
from seqnlp.cli.serving import server_parts  # noqa: E402
from seqnlp.serve import Limits, MicroBatcher, RequestError, parse_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CKPTS = ROOT / "tests" / "fixtures" / "checkpoints" / "v0.1.0"
TAGGER = str(CKPTS / "tagger_lstm_crf.ckpt")
CLASSIFIER = str(CKPTS / "classifier_lstm_last.ckpt")
TRANSLATOR = str(CKPTS / "translator_gru.ckpt")
SENTENCES = [
    "Ana vive en Madrid desde 1990 .",
    "El portavoz de Naciones Unidas , Rafael Iglesias , anunció su dimisión .",
    "La reunión terminó sin acuerdo , dijo Elena Ruiz .",
    "Nadie esperaba la victoria de Sofía Navarro en los Juegos Olímpicos .",
    "hoy",
    "",
]


@dataclass
class Server:
    """A ``seqnlp serve`` process, its URL and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM (unless sent already), then SIGKILL if it is still there after 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(model: str, log: Path, *options: str) -> Server:
    """Start ``seqnlp serve MODEL --port 0``: the OS picks a free port, the log says it."""
    handle = open(log, "wb")  # noqa: SIM115 - the child writes it; closed below
    try:
        proc = subprocess.Popen([sys.executable, "-m", "seqnlp", "serve", model, "--port", "0",
                                 *options], stdout=handle, stderr=subprocess.STDOUT,
                                cwd=ROOT)  # fmt: skip
    finally:
        handle.close()
    return Server(proc, log)


def wait_ready(server: Server, timeout: float = 120.0) -> None:
    """Wait for the startup line's URL, then for ``/health``."""
    deadline = time.monotonic() + timeout
    while not server.url:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", server.log_text())
        if found:
            server.url = found.group(1)
        elif server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"seqnlp serve did not start:\n{server.log_text()}")
        else:
            time.sleep(0.1)
    assert httpx.get(server.url + "/health", trust_env=False).status_code == 200


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One server per model, started at once; each killed at teardown whatever happens.

    The tagger has small limits (413 cases) and waits 20 ms for batches; the translator
    predicts in the server's own process (``--predictor thread``)."""
    folder = tmp_path_factory.mktemp("serve")
    started: dict[str, Server] = {}
    try:
        started["tagging"] = start_server(TAGGER, folder / "tagger.log", "--max_inputs", "64",
                                          "--max_chars", "300", "--max_wait_ms", "20")
        started["classification"] = start_server(CLASSIFIER, folder / "classifier.log")
        started["translation"] = start_server(
            TRANSLATOR, folder / "translator.log", "--beam_size", "2", "--predictor", "thread"
        )
        for server in started.values():
            wait_ready(server)
        yield started
    finally:
        for server in started.values():  # all at once, then each waited for (or killed)
            if server.proc.poll() is None:
                server.proc.terminate()
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with httpx.Client(trust_env=False, timeout=60) as c:
        yield c


@cache
def local(model: str, **options: Any) -> seqnlp.predict.Predictor:
    """The in-process predictor that the server's answers are compared with."""
    return seqnlp.load(model, **options)


def plain(records: Any) -> Any:
    """Records as JSON gives them back (tuples become lists)."""
    return json.loads(json.dumps(records))


def post(client: Any, server: Server, body: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(server.url + "/predict", content=content,
                       headers={"content-type": "application/json"})  # fmt: skip


# -- answers equal the in-process predictor's ----------------------------------------------


def test_tagger_strings_and_token_lists(servers: dict[str, Server], client: Any) -> None:
    inputs: list[Any] = [*SENTENCES, ["Ana", "vive", "en", "Lima"], ["Repsol", "y", "Iberia"]]
    answer = post(client, servers["tagging"], {"inputs": inputs})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"outputs": plain(local(TAGGER).predict(inputs))}
    assert post(client, servers["tagging"], {"inputs": []}).json() == {"outputs": []}


def test_classifier(servers: dict[str, Server], client: Any) -> None:
    answer = post(client, servers["classification"], {"inputs": SENTENCES})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == plain(local(CLASSIFIER).predict(SENTENCES))


def test_translator_with_its_options(servers: dict[str, Server], client: Any) -> None:
    inputs = ["Ein Mann sitzt am Strand .", "Zwei Hunde spielen im Schnee ."]
    answer = post(client, servers["translation"], {"inputs": inputs})
    assert answer.status_code == 200, answer.text
    expected = local(TRANSLATOR, beam_size=2).predict(inputs)
    assert answer.json()["outputs"] == plain(expected)
    metadata = client.get(servers["translation"].url + "/metadata").json()
    assert metadata["options"]["beam_size"] == 2


def test_startup_line_names_the_http_parser_and_event_loop(
    servers: dict[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """httptools and uvloop (the serve extra) are used where they import, and said."""
    http, loop = server_parts()
    for server in servers.values():
        assert f"HTTP parser {http}, event loop {loop}" in server.log_text()
    monkeypatch.setitem(sys.modules, "httptools", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert server_parts() == ("h11", "asyncio")


def test_the_model_runs_in_a_child_process_and_its_end_is_reported(tmp_path: Path) -> None:
    """``--predictor process`` (the default): the model is in a child process, the
    server never imports torch; if the child is killed, ``/predict`` answers 500 and
    ``/health`` 503, each with a JSON error, and SIGTERM still exits 0."""
    server = start_server(CLASSIFIER, tmp_path / "server.log", "--threads", "1")
    try:
        wait_ready(server)
        found = re.search(r"the model in process (\d+)", server.log_text())
        assert found, server.log_text()
        child = int(found.group(1))
        modules = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "libtorch" not in modules  # torch is loaded by the child only
        assert "libtorch" in Path(f"/proc/{child}/maps").read_text()
        ok = httpx.post(server.url + "/predict", json={"inputs": ["Great film!"]}, trust_env=False)
        assert ok.status_code == 200 and ok.json()["outputs"][0]["label"] is not None
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        gone = httpx.post(server.url + "/predict", json={"inputs": ["Great film!"]},
                          trust_env=False)  # fmt: skip
        assert gone.status_code == 500 and "prediction process" in gone.json()["error"]
        health = httpx.get(server.url + "/health", trust_env=False)
        assert health.status_code == 503 and "ended" in health.json()["status"]
    finally:
        server.stop()
    assert server.proc.returncode == 0


def test_two_prediction_processes_answer_concurrent_requests_in_order(tmp_path: Path) -> None:
    """``--workers 2``: two child processes, batches predicted on both at once, every
    request answered with its own records."""
    server = start_server(CLASSIFIER, tmp_path / "server.log", "--workers", "2",
                          "--threads", "1", "--max_batch_size", "2")  # fmt: skip
    try:
        wait_ready(server)
        found = re.search(r"the model in processes (\d+), (\d+)", server.log_text())
        assert found, server.log_text()
        assert all(Path(f"/proc/{pid}").exists() for pid in found.groups())
        texts = [f"film number {i} was {'great' if i % 2 else 'dull'}" for i in range(24)]
        want = [r for t in texts for r in local(CLASSIFIER).predict([t])]

        async def ask_all() -> list[Any]:
            async with httpx.AsyncClient(trust_env=False) as http:
                answers = await asyncio.gather(*(
                    http.post(server.url + "/predict", json={"inputs": [t]}) for t in texts))
            return [a.json()["outputs"][0] for a in answers]

        got = asyncio.run(ask_all())
        assert [r["label"] for r in got] == [r["label"] for r in want]
        health = httpx.get(server.url + "/health", trust_env=False).json()
        assert health["predictor"] == "process" and health["batches"] >= 12
    finally:
        server.stop()
    assert server.proc.returncode == 0


def test_batching_wait_defaults_to_none_with_a_prediction_process(
    servers: dict[str, Server], client: Any
) -> None:
    """A prediction process joins the batches waiting for it, so by default requests
    do not wait in the server for others (a wait would only make them miss its next
    call); a model in the server's own process waits 2 ms; a given wait is kept."""
    health = {task: client.get(s.url + "/health").json() for task, s in servers.items()}
    assert health["classification"]["predictor"] == "process"
    assert health["classification"]["max_wait_ms"] == 0
    assert health["translation"]["predictor"] == "thread"
    assert health["translation"]["max_wait_ms"] == 2
    assert health["tagging"]["max_wait_ms"] == 20
    assert all(h["max_batch_size"] == 128 for h in health.values())


def test_health_and_metadata(servers: dict[str, Server], client: Any) -> None:
    server = servers["tagging"]
    health = client.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["task"] == "tagging"
    assert health["predictor"] == "process"  # the default: the model in a child process
    assert {"requests", "inputs", "batches", "errors", "pending"} <= set(health)
    metadata = client.get(server.url + "/metadata").json()
    assert metadata == plain(local(TAGGER).metadata())
    missing = client.get(server.url + "/nowhere")
    assert missing.status_code == 404 and "error" in missing.json()


def test_an_exported_folder(tmp_path: Path) -> None:
    """MODEL may be a folder of ``seqnlp export``: its card is in ``/metadata``."""
    export = pytest.importorskip("seqnlp.export.writer")
    from fastapi.testclient import TestClient

    from seqnlp.serve import create_app

    folder = tmp_path / "classifier"
    export.export_model(CLASSIFIER, folder)
    predictor = seqnlp.load(folder)
    with TestClient(create_app(predictor)) as test_client:
        metadata = test_client.get("/metadata").json()
        assert metadata == plain(predictor.metadata()) and "card" in metadata
        answer = test_client.post("/predict", json={"inputs": SENTENCES})
        assert answer.json() == {"outputs": plain(local(CLASSIFIER).predict(SENTENCES))}


# -- bad input: 400, 413, 422, never a crash ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"inputs": ["a"', 400, "not valid JSON"),
        (b'{"inputs": ["\xff\xfe"]}', 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b"[" * 100_000, 400, "nested too deeply"),
        ({"inputs": ["a"] * 65}, 413, "--max_inputs"),
        ({"inputs": ["ok", "x" * 301]}, 413, "--max_chars"),
        ({"inputs": [["x" * 150, "y" * 150]]}, 413, "--max_chars"),
        (b"x" * 400_000, 413, "body"),
        ([1, 2], 422, "JSON object"),
        ({"texts": ["a"]}, 422, 'no "inputs"'),
        ({"inputs": ["a"], "extra": 1}, 422, "unknown field"),
        ({"inputs": "Ana vive en Madrid"}, 422, "must be a list"),
        ({"inputs": ["a", 3]}, 422, "input 1"),
        ({"inputs": [None]}, 422, "input 0"),
        ({"inputs": [{"text": "a"}]}, 422, "input 0"),
        ({"inputs": [[]]}, 422, "empty token list"),
        ({"inputs": [["Ana", ""]]}, 422, "token 1"),
        ({"inputs": [["Ana", " "]]}, 422, "token 1"),
        ({"inputs": [["Ana", 7]]}, 422, "token 1"),
        ({"inputs": [[["nested"]]]}, 422, "token 0"),
        (b'{"inputs": ["\\ud800"]}', 422, "Unicode"),
    ],
)
def test_bad_requests(
    servers: dict[str, Server], client: Any, body: Any, status: int, says: str
) -> None:
    answer = post(client, servers["tagging"], body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]


def test_chunked_bodies_and_other_methods(servers: dict[str, Server], client: Any) -> None:
    """A body without ``Content-Length`` (chunked) is read and limited as it comes; a
    method other than POST on ``/predict`` goes on to FastAPI (405, JSON)."""
    server = servers["tagging"]

    def chunks(*parts: bytes) -> Iterator[bytes]:
        yield from parts

    before = client.get(server.url + "/health").json()["rejected"]
    ok = client.post(server.url + "/predict", content=chunks(b'{"inputs": ', b'["Ana vive"]}'))
    assert ok.status_code == 200 and len(ok.json()["outputs"]) == 1
    big = client.post(server.url + "/predict", content=chunks(*[b"x" * 100_000] * 4))
    assert big.status_code == 413 and "body" in big.json()["error"]
    assert client.get(server.url + "/health").json()["rejected"] == before + 1
    wrong = client.get(server.url + "/predict")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_token_lists_only_for_a_tagger(servers: dict[str, Server], client: Any) -> None:
    for task in ("classification", "translation"):
        answer = post(client, servers[task], {"inputs": ["fine", ["a", "b"]]})
        assert answer.status_code == 422
        assert "input 1 must be a string" in answer.json()["error"]
    # the servers serve on
    assert post(client, servers["tagging"], {"inputs": ["hoy"]}).status_code == 200


def test_parse_inputs_counts_a_token_list_as_joined_text() -> None:
    limits = Limits(max_chars=7, max_inputs=2)
    assert parse_inputs(b'{"inputs": [["abc", "def"]]}', limits, token_lists=True)
    with pytest.raises(RequestError, match="8 characters"):
        parse_inputs(b'{"inputs": [["abc", "defg"]]}', limits, token_lists=True)


# -- under load: batched, in order -------------------------------------------------------


def test_concurrent_requests_are_batched_in_order(
    servers: dict[str, Server], client: Any
) -> None:
    server = servers["tagging"]
    n = 48
    requests = [[SENTENCES[i % 4], f"Pedro {i} vive en Quito ."] for i in range(n)]
    records = plain(local(TAGGER).predict([text for inputs in requests for text in inputs]))
    expected = [records[2 * i : 2 * i + 2] for i in range(n)]
    before = client.get(server.url + "/health").json()
    answers: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def send(i: int) -> None:
        barrier.wait()
        answers[i] = post(client, server, {"inputs": requests[i]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a.status_code for a in answers] == [200] * n
    assert [a.json()["outputs"] for a in answers] == expected
    after = client.get(server.url + "/health").json()
    served = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert served == n and after["inputs"] - before["inputs"] == 2 * n
    assert batches < served / 2, (batches, served)
    assert after["errors"] == 0 and after["pending"] == 0


# -- a predictor that fails fails its own request only -----------------------------------


def _flaky(inputs: list[Any]) -> list[dict[str, Any]]:
    if "boom" in inputs:
        raise RuntimeError("the network broke")
    return [{"text": text} for text in inputs]


def test_a_failing_input_fails_its_own_request_only() -> None:
    async def main() -> tuple[list[Any], MicroBatcher]:
        batcher = MicroBatcher(_flaky, max_batch_size=64, max_wait_ms=50)
        await batcher.start()
        try:
            results = await asyncio.gather(
                batcher.predict(["a", "b"]), batcher.predict(["boom"]), batcher.predict(["c"]),
                return_exceptions=True,
            )  # fmt: skip
            results.append(await batcher.predict(["d"]))  # and it serves on
        finally:
            await batcher.stop()
        return results, batcher

    results, batcher = asyncio.run(main())
    assert results[0] == [{"text": "a"}, {"text": "b"}]
    assert isinstance(results[1], RuntimeError)
    assert results[2] == [{"text": "c"}] and results[3] == [{"text": "d"}]
    assert batcher.stats.errors == 1 and batcher.stats.requests == 3


def test_a_batch_holds_at_most_max_batch_size_inputs() -> None:
    calls: list[list[str]] = []

    def predict(inputs: list[Any]) -> list[dict[str, Any]]:
        calls.append(list(inputs))
        return [{"text": text} for text in inputs]

    requests = [["a"], ["b", "c"], ["d", "e"], ["f"], ["g", "h", "i", "j"], ["k"]]

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_batch_size=3, max_wait_ms=50)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict(r) for r in requests))
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results == [[{"text": text} for text in r] for r in requests]
    assert [text for call in calls for text in call] == list("abcdefghijk")  # in order
    assert all(len(call) <= 3 or call == list("ghij") for call in calls), calls
    assert len(calls) < len(requests)


@pytest.mark.parametrize("parallel", [1, 2])
def test_parallel_batches_are_in_flight_at_once(parallel: int) -> None:
    """With ``parallel`` 2 two batches are predicted at the same time (each call waits
    for the other at a barrier, which would time out otherwise); with 1 never more
    than one call runs."""
    barrier = threading.Barrier(2, timeout=30)
    lock, running, most = threading.Lock(), [0], [0]

    def predict(inputs: list[Any]) -> list[dict[str, Any]]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if parallel == 2:
            barrier.wait()  # both calls in flight, or BrokenBarrierError after 30 s
        else:
            time.sleep(0.05)
        with lock:
            running[0] -= 1
        return [{"text": text} for text in inputs]

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_batch_size=1, max_wait_ms=0, parallel=parallel)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict([t]) for t in "abcd"))
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == [[{"text": t}] for t in "abcd"]
    assert most[0] == parallel


def test_a_failing_input_answers_500_json() -> None:
    from fastapi.testclient import TestClient

    from seqnlp.serve import create_app

    class Flaky:
        task = "classification"

        def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
            if inputs == ["no json"]:  # a record JSON cannot write: a bug past the predictor
                return [{"text": {"a set"}}]
            return _flaky(inputs)

        def metadata(self) -> dict[str, Any]:
            return {"task": self.task}

    with TestClient(create_app(Flaky())) as test_client:  # type: ignore[arg-type]
        failed = test_client.post("/predict", json={"inputs": ["boom"]})
        assert failed.status_code == 500 and "the network broke" in failed.json()["error"]
        assert test_client.post("/predict", json={"inputs": ["x"]}).json() == {
            "outputs": [{"text": "x"}]
        }
        assert test_client.get("/health").json()["errors"] == 1
        unwritable = test_client.post("/predict", json={"inputs": ["no json"]})
        assert unwritable.status_code == 500
        assert unwritable.json() == {"error": "internal error: TypeError"}
        assert test_client.post("/predict", json={"inputs": ["y"]}).json() == {
            "outputs": [{"text": "y"}]
        }


# -- the command line --------------------------------------------------------------------


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    from seqnlp.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqnlp: error:") and "\n" not in err, err
    return err


def test_cli_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no such checkpoint" in _cli_error(capsys, "missing.ckpt", "--port", "0")
    assert "beam_size" in _cli_error(capsys, TAGGER, "--port", "0", "--beam_size", "3")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert "cannot listen" in _cli_error(capsys, TAGGER, "--port", port)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    assert "pip install 'seqnlp[serve]'" in _cli_error(capsys, TAGGER, "--port", "0")


# -- SIGTERM: the requests in flight are answered, exit status 0 -------------------------


def _read_response(sock: socket.socket) -> tuple[int, Any]:
    """The status and JSON body of an HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of a response"
        body += chunk
    return int(head.split()[1]), json.loads(body)


def test_sigterm_answers_requests_in_flight_and_exits_0(servers: dict[str, Server]) -> None:
    """Requests whose bodies are half sent when SIGTERM comes are in flight for sure:
    the server stops accepting connections, answers them once their bodies are in,
    and exits 0."""
    server = servers["classification"]  # last: it stops this module's classifier server
    host, port = server.url.removeprefix("http://").split(":")
    bodies = [json.dumps({"inputs": [text]}).encode() for text in SENTENCES[:4]]
    socks = [socket.create_connection((host, int(port)), timeout=60) for _ in bodies]
    try:
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body[:5])  # fmt: skip
        time.sleep(1.0)  # the server has read the heads: the requests have begun
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.TransportError):  # it accepts no new connection
            httpx.get(server.url + "/health", trust_env=False, timeout=5)
        answers = []
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(body[5:])
            answers.append(_read_response(sock))
    finally:
        for sock in socks:
            sock.close()
    assert server.proc.wait(30) == 0, server.log_text()
    expected = plain(local(CLASSIFIER).predict(SENTENCES[:4]))
    assert answers == [(200, {"outputs": [record]}) for record in expected]
    log = server.log_text()
    assert "stopped after" in log and "Traceback" not in log, log
