"""``seqnlp.serve_process``: a prediction process with several batches on their way
joins those waiting in its pipe into one call, answers each batch with its own records
(equal to predicting it alone), and, when a joined call fails, fails only the bad
batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

import seqnlp
from seqnlp.serve_process import PredictorPool, PredictorProcess

CKPTS = Path(__file__).resolve().parent / "fixtures" / "checkpoints" / "v0.1.0"
CLASSIFIER = str(CKPTS / "classifier_lstm_last.ckpt")
TEXTS = [f"film number {i} was {'great' if i % 3 else 'dull and long'}" for i in range(12)]
#: a batch that keeps the child busy while the small ones queue behind it
LONG = [" ".join(["a remarkably long and thoroughly tedious film"] * 40)] * 8000


@pytest.fixture(scope="module")
def process() -> Iterator[PredictorProcess]:
    predictor = PredictorProcess(CLASSIFIER, {}, threads=1, merge_limit=8)
    yield predictor
    predictor.close()
    with pytest.raises(RuntimeError, match="has ended"):  # closed: a batch fails at once
        predictor.submit(TEXTS[:1]).result(5)


def labels(records: list[dict]) -> list[tuple[str, str, float]]:
    """Text, label and probability (to 1e-3: a joined batch pads differently)."""
    return [(r["text"], r["label"], pytest.approx(r["probability"], abs=1e-3))
            for r in records]  # fmt: skip


def test_waiting_batches_are_joined_and_each_gets_its_own_records(
    process: PredictorProcess,
) -> None:
    alone = seqnlp.load(CLASSIFIER)
    calls = process.calls
    busy = process.submit(LONG)  # over merge_limit: predicted alone
    small = [process.submit(TEXTS[i : i + 3]) for i in range(0, 12, 3)]
    assert len(busy.result(120)) == len(LONG)
    got = [future.result(60) for future in small]
    assert [labels(records) for records in got] == [
        labels(alone.predict(TEXTS[i : i + 3])) for i in range(0, 12, 3)]  # fmt: skip
    # the four batches of 3 waited behind the long one: joined up to 8 inputs, two calls
    assert process.calls - calls == 1 + 2
    assert process.inputs_in_flight == 0


def test_a_failing_batch_fails_alone_when_joined(process: PredictorProcess) -> None:
    alone = seqnlp.load(CLASSIFIER)
    busy = process.submit(LONG)
    good = process.submit(TEXTS[:2])
    bad = process.submit([12345])  # not a string: the tokenizer raises
    after = process.submit(TEXTS[2:4])
    busy.result(120)
    assert labels(good.result(60)) == labels(alone.predict(TEXTS[:2]))
    assert labels(after.result(60)) == labels(alone.predict(TEXTS[2:4]))
    with pytest.raises(AttributeError):  # the child's own error, across the pipe
        bad.result(60)
    assert process.alive and process.predict(TEXTS[:1])  # and it serves on


class FakeWorker:
    """A prediction process's bookkeeping without the process: ``submit`` records the
    batch and leaves it on its way."""

    def __init__(self) -> None:
        self.inputs_in_flight = 0
        self.batches: list[list[str]] = []

    def submit(self, inputs: list[str]) -> Future[list[dict]]:
        self.inputs_in_flight += len(inputs)
        self.batches.append(inputs)
        return Future()


def test_a_pool_gives_each_batch_to_the_process_with_the_fewest_inputs_on_their_way() -> None:
    pool = PredictorPool.__new__(PredictorPool)  # its choice alone (the processes: test_serve)
    first, second = FakeWorker(), FakeWorker()
    pool.workers, pool._lock = [first, second], threading.Lock()  # type: ignore[list-item]
    pool.submit(["a"] * 10)
    pool.submit(["b"] * 3)  # not behind the 10
    pool.submit(["c"] * 5)  # 3 < 10
    pool.submit(["d"])  # 8 against 10
    assert first.batches == [["a"] * 10] and len(second.batches) == 3
    first.inputs_in_flight = 0  # its batch answered
    pool.submit(["e"])
    assert first.batches[-1] == ["e"]


def test_a_gone_process_fails_what_waits_and_what_comes(tmp_path: Path) -> None:
    import os
    import signal

    predictor = PredictorProcess(CLASSIFIER, {}, threads=1)
    try:
        waiting = predictor.submit(LONG)
        os.kill(predictor.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="has ended"):
            waiting.result(60)
        with pytest.raises(RuntimeError, match="has ended"):
            predictor.predict(TEXTS[:1])
        assert predictor.inputs_in_flight == 0
    finally:
        predictor.close()
