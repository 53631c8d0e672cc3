"""What every predictor shares: inputs batched by length, records in the input order,
output formats, metadata, and evaluation on labelled data.

Torch-free: ``Predictor`` is the base of the torch predictors (``TorchPredictor``,
``seqnlp.predict.torch_base``) and of the ONNX Runtime ones (``seqnlp.onnx_runtime``).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from seqnlp.data.sorting import length_sorted_batches

Record = dict[str, Any]


@contextlib.contextmanager
def loaded_objects_frozen() -> Iterator[None]:
    """Keep every object alive out of the cyclic garbage collector's rounds
    (``gc.freeze``) until the block ends (``gc.unfreeze``): for a command that has
    loaded a model and now predicts for long (``seqnlp predict``, ``evaluate``,
    ``serve`` and its prediction processes).

    torch, a loaded model and their libraries are some 550,000 objects, which the
    collector otherwise traverses again whenever prediction's records and tensors have
    allocated enough: an eighth of a tagger's prediction time in micro-batches of 32
    sentences (docs/benchmarks.md). Objects made in the block are collected as before.
    Freezing is instant; no collection runs first (after loading one takes a quarter
    of a second and finds a few hundred objects, which then wait for the block's end).
    Where the collector is off or something else froze objects, nothing is changed.
    """
    mine = gc.isenabled() and gc.get_freeze_count() == 0
    if mine:
        gc.freeze()
    try:
        yield
    finally:
        if mine:
            gc.unfreeze()


def task_options(path: object, task: str, takes: Sequence[str], **given: Any) -> dict[str, Any]:
    """The prediction options given (those not None), refused in one line when one is
    not among ``takes``, the options of a ``task`` model (``beam_size`` for a tagger):
    what ``seqnlp.load`` checks, for either runtime."""
    given = {name: value for name, value in given.items() if value is not None}
    foreign = sorted(set(given) - set(takes))
    if foreign:
        raise ValueError(f"{path}: a {task} model takes no {' or '.join(foreign)} option "
                         f"(its own: {', '.join(takes) or 'none of these'})")  # fmt: skip
    return given


class Predictor:
    """Base of every predictor: a codec and the prediction options, set once when the
    predictor is built and never changed afterwards; a runtime (torch, ONNX Runtime)
    adds the network and ``predict_batch``.

    Args:
        codec: the task's codec (tokenizers, vocabularies, labels).
        batch_size: inputs per batch (at most).
    """

    #: the task's name, and the options ``seqnlp.load`` passes on for it.
    task: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    #: the JSON-lines input field, and the output formats besides ``jsonl``.
    jsonl_field: ClassVar[str] = "text"
    text_formats: ClassVar[tuple[str, ...]] = ()
    #: a budget of padded ``length`` units (inputs x the longest) per batch; None: no budget.
    max_tokens: int | None = None

    def __init__(self, codec: Any, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.codec = codec
        self.batch_size = batch_size
        #: what the model folder's card says (``seqnlp.export``); empty for a checkpoint.
        self.card: dict[str, Any] = {}

    @property
    def default_format(self) -> str:
        """The output format when neither the user nor the output's extension names one."""
        return "jsonl"

    def predict(
        self, inputs: Sequence[Any], on_batch: Callable[[int], object] | None = None
    ) -> list[Record]:
        """One record per input, in the input order.

        ``on_batch(n)`` is called after each batch with its size (progress display).
        """
        results: list[Record | None] = [None] * len(inputs)
        lengths = [self.length(item) for item in inputs]
        batches = length_sorted_batches(
            range(len(inputs)), lengths.__getitem__, self.batch_size, self.max_tokens
        )
        for idx, records in zip(batches, self._records_by_batch(inputs, batches), strict=True):
            for i, record in zip(idx, records, strict=True):
                results[i] = record
            if on_batch is not None:
                on_batch(len(idx))
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _records_by_batch(
        self, inputs: Sequence[Any], batches: list[list[int]]
    ) -> Iterator[list[Record]]:
        """Each batch's records, in order (a runtime may predict several at once)."""
        for idx in batches:
            yield self.predict_batch([inputs[i] for i in idx])

    def metadata(self) -> dict[str, Any]:
        """What a user of the model needs to know, as JSON-able data: the task, its labels,
        the prediction options in force and, for an exported model, its card's fields."""
        from seqnlp import __version__

        options = {name: getattr(self, name) for name in self.options if hasattr(self, name)}
        options["batch_size"] = self.batch_size
        return {"task": self.task, **self.labels(), "options": options,
                "seqnlp_version": __version__, **({"card": self.card} if self.card else {})}

    def labels(self) -> dict[str, list[str]]:
        """The task's label sets by name (none for translation)."""
        return {}

    def stream(self) -> Any:
        """A stream that takes one token at a time (``feed``) in constant memory: for
        unidirectional classifiers and language models run by torch."""
        reason = {
            "tagging": "a tagger's encoder is bidirectional: it reads the whole sentence "
                       "before it labels the first word",
            "translation": "a translator's encoder is bidirectional: it reads the whole "
                           "source before the first target word",
        }.get(self.task, "this runtime has no streaming")  # fmt: skip
        raise ValueError(
            f"streaming needs a unidirectional classifier or language model in torch; {reason}"
        )

    def format_record(self, record: Record, fmt: str) -> str:
        """One record as output text (``jsonl`` here; subclasses add formats)."""
        return json.dumps(record, ensure_ascii=False) + "\n"

    def evaluate(self, source: str, **reader_options: Any) -> dict[str, Any]:
        """The model's scores on a labelled file or named dataset split (``NAME:SPLIT``),
        read with the task's reader options."""
        inputs, gold = self.read_labelled(source, **reader_options)
        return self.score(gold, self.predict(inputs))

    # -- what a task provides -----------------------------------------------------------
    def length(self, item: Any) -> int:
        """An input's batching length."""
        raise NotImplementedError

    def predict_batch(self, items: Sequence[Any]) -> list[Record]:
        """The records of one batch of inputs, in their order."""
        raise NotImplementedError

    def read_labelled(self, source: str, **reader_options: Any) -> tuple[list[Any], list[Any]]:
        """A labelled source's inputs (as ``predict`` takes them) and gold labels."""
        raise NotImplementedError

    def score(self, gold: list[Any], records: list[Record]) -> dict[str, Any]:
        """Metrics of the predicted ``records`` against ``gold``."""
        raise NotImplementedError
