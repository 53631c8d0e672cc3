"""Prediction over files and lists, on one process or shared by the processes of
``--devices N`` (a torch.distributed group).

``predict_file`` streams a file through a predictor (on several ranks, rank 0 reads
and writes and every rank predicts its share of each chunk); ``RankShared`` wraps a
predictor so that each rank predicts its share of the same inputs and every rank
receives every record (and so computes the same scores). On one process both are
the plain predictor's work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any, TextIO, TypeVar

from seqnlp.distributed import rank_and_world
from seqnlp.outputs import atomic_output, refuse_overwriting_input
from seqnlp.predict.base import Predictor, Record
from seqnlp.predict.files import InputFormat, chunked, output_format, progress_bar, read_inputs

T = TypeVar("T")

def on_every_rank(step: Callable[[], T]) -> T:
    """``step()`` on this rank, then a check that it succeeded on every rank.

    A rank whose step raised re-raises its error; the others raise a ValueError that
    names that rank, so that no rank is left waiting in a later collective for one
    that stopped. On one process this is ``step()``.
    """
    _, world = rank_and_world()
    if world == 1:
        return step()
    import torch.distributed as dist

    failure: Exception | None = None
    try:
        result = step()
    except Exception as err:
        failure = err
    reports: list[str | None] = [None] * world
    dist.all_gather_object(reports, None if failure is None else _one_line(failure))
    if failure is not None:
        raise failure
    for other, report in enumerate(reports):
        if report is not None:
            raise ValueError(f"stopped: rank {other} failed: {report}")
    return result


def _one_line(err: Exception) -> str:
    text = str(err).strip().split("\n")[0]
    return text if isinstance(err, ValueError) else f"{type(err).__name__}: {text}"


def _from_rank_zero(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (``obj`` itself on one process)."""
    if rank_and_world()[1] == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def predict_on_every_rank(
    predict: Callable[[Sequence[Any]], list[Record]], inputs: Sequence[Any]
) -> list[Record]:
    """All records of ``inputs`` in the input order, each input predicted once across
    the ranks of the process group; every rank passes the same ``inputs`` and
    receives every record.

    Rank r predicts inputs r, r + world, r + 2 world, ... (a similar mix of lengths
    on every rank). On one process this is ``predict(inputs)``.
    """
    rank, world = rank_and_world()
    if world == 1:
        return predict(inputs)
    import torch.distributed as dist

    mine = on_every_rank(lambda: predict([inputs[i] for i in range(rank, len(inputs), world)]))
    parts: list[list[Record]] = [[] for _ in range(world)]
    dist.all_gather_object(parts, mine)
    return [parts[i % world][i // world] for i in range(len(inputs))]


class RankShared:
    """A predictor whose ``predict`` and ``evaluate`` are shared by the ranks of the
    process group: every rank passes the same inputs, predicts its share and receives
    every record (``predict_on_every_rank``), so every rank computes the same scores.
    The wrapped predictor is not changed."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def predict(
        self, inputs: Sequence[Any], on_batch: Callable[[int], object] | None = None
    ) -> list[Record]:
        own = partial(self.predictor.predict, on_batch=on_batch)
        return predict_on_every_rank(own, inputs)

    def evaluate(self, source: str, **reader_options: Any) -> dict[str, Any]:
        """As ``Predictor.evaluate``: every rank reads the labelled data and predicts its
        share of it."""
        inputs, gold = self.predictor.read_labelled(source, **reader_options)
        return self.predictor.score(gold, self.predict(inputs))


def predict_file(
    predictor: Predictor,
    input_path: str,
    output_path: str,
    input_format: InputFormat = "auto",
    output_fmt: str = "auto",
    chunk_size: int = 10_000,
    progress: bool = False,
    encoding: str = "utf-8",
    jsonl_field: str | None = None,
) -> int:
    """Stream ``input_path`` through the predictor in chunks into ``output_path`` (``-``:
    standard input and output); returns the records written.

    Memory holds one chunk of inputs and records at a time, whatever the file's size.
    The output is written to a temporary file renamed once complete. ``progress``: a
    progress line on standard error (records done, sentences/s; the percentage too when
    the input is a text or JSON-lines file, counted first). ``encoding``: the input's;
    ``jsonl_field``: the JSON-lines field read (default the predictor's).

    Under a process group (``predict --devices N``) every rank calls it with the same
    arguments: rank 0 reads the input chunk by chunk and sends each chunk to every
    rank, each rank predicts its share of the chunk (``predict_on_every_rank``) and
    rank 0 writes the records in the input order. Only rank 0 reads the input and
    writes the output, and a failure on any rank stops every rank with an error.
    """
    rank, world = rank_and_world()
    fmt = output_format(predictor, output_path, output_fmt)
    count = 0
    with ExitStack() as stack:

        def start() -> tuple[TextIO | None, Any, Iterator[list[Any]]]:
            if rank != 0:
                return None, None, iter(())
            refuse_overwriting_input(input_path, output_path)
            out = stack.enter_context(atomic_output(output_path))
            bar = stack.enter_context(progress_bar(input_path, input_format, progress))
            field = jsonl_field or predictor.jsonl_field
            items = read_inputs(input_path, input_format, field, encoding)
            return out, bar, chunked(items, chunk_size)

        out, bar, chunks = on_every_rank(start)
        predict = partial(predictor.predict, on_batch=bar.update if bar is not None else None)
        while (chunk := _from_rank_zero(on_every_rank(lambda: next(chunks, None)))) is not None:
            records = predict_on_every_rank(predict, chunk)

            def write(records: list[Record] = records, first: int = count + 1) -> None:
                if out is None:
                    return
                for number, record in enumerate(records, start=first):
                    try:
                        out.write(predictor.format_record(record, fmt))
                    except ValueError as err:  # a record its format cannot hold
                        raise ValueError(f"{output_path}: record {number}: {err}") from None
                bar.update(len(records) - len(range(0, len(records), world)))  # other ranks'

            on_every_rank(write)  # a failure on rank 0 stops the others too
            count += len(chunk)
    return count
