"""``load``: a checkpoint or model folder in, the task's predictor out, built once with
every prediction option."""

from __future__ import annotations

from pathlib import Path

import torch

from seqnlp.export.card import card_fields
from seqnlp.export.loading import open_model
from seqnlp.export.writer import INT8_PAYS
from seqnlp.predict.base import Predictor, task_options
from seqnlp.predict.classifier import ClassificationPredictor
from seqnlp.predict.language_model import LanguageModelPredictor
from seqnlp.predict.tagger import TaggingPredictor
from seqnlp.predict.translator import TranslationPredictor

_ALL = (TaggingPredictor, ClassificationPredictor, TranslationPredictor, LanguageModelPredictor)
PREDICTORS: dict[str, type[Predictor]] = {p.task: p for p in _ALL}


def load(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    quantize: str | None = None,
    batch_size: int = 64,
    parallel_batches: int = 1,
    confidence: bool | None = None,
    n_best: int | None = None,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    max_tokens: int | None = None,
    pretokenized: bool | None = None,
    documents: bool | None = None,
    runtime: str = "torch",
    threads: int | None = None,
    vectors: str | None = None,
) -> Predictor:
    """The predictor of a checkpoint, whatever its task, built once with every option.

    Args:
        path: a checkpoint written by ``seqnlp fit``, a folder written by ``seqnlp
            export``, or ``hf://ORG/NAME[@REVISION]``: such a folder on the Hugging
            Face Hub (fetched once, then read from the cache).
        device: where the network runs (``cpu``, ``cuda:0``, ...).
        quantize: ``int8``: dynamic quantization of the recurrent and linear layers
            for faster CPU prediction (``seqnlp.quantize``); the file is unchanged.
        batch_size: inputs per batch.
        parallel_batches: CPU batches predicted at once in threads sharing torch's
            threads.
        confidence, n_best: tagging: entity confidences (default on); the ``n_best``
            most probable tag sequences (CRF head).
        beam_size, n_best, length_penalty, max_tokens: translation: beam size (default
            5; 1 is greedy), translations per source, GNMT length-penalty alpha (default
            the model's), padded source pieces per batch (default 8,192).
        pretokenized: tagging and classification: strings are tokens separated by
            white space already, not raw text (default: raw text; a classifier's
            ``evaluate`` reads a labelled file as its training text was).
        documents: tagging: each string is a document, split into sentences.
        runtime: ``torch``, or ``onnx``: an exported folder's ONNX graphs run by ONNX
            Runtime with NumPy (``seqnlp.onnx_runtime``; torch is not imported).
        threads: ONNX Runtime only: batches predicted at once, each on one thread
            (``seqnlp.onnx_runtime.load``); torch's threads are torch's own setting.
        vectors: tagging, torch runtime: word vectors (any ``data.vectors`` format, or
            a whole fastText model) that give the words of the text to tag that the
            model lacks rows of their own, as ``extend_vocab`` did for the validation
            and test text in training (``seqnlp.predict.vector_extension``).

    An option left at None takes the task's default; one given for a task it does not
    apply to (``beam_size`` for a tagger) is refused.
    """
    if runtime not in ("torch", "onnx"):
        raise ValueError(f"runtime must be torch or onnx, got {runtime!r}")
    if runtime == "onnx":
        from seqnlp.onnx_runtime import load as load_onnx

        if quantize not in (None, "int8") or str(device) != "cpu":
            raise ValueError("the onnx runtime takes quantize int8 and device cpu only")
        return load_onnx(path, quantize=quantize, batch_size=batch_size, threads=threads,
                         confidence=confidence,
                         n_best=n_best, beam_size=beam_size, length_penalty=length_penalty,
                         max_tokens=max_tokens, pretokenized=pretokenized,
                         documents=documents, vectors=vectors)  # fmt: skip
    if threads is not None:
        raise ValueError("threads is an option of the onnx runtime (torch: "
                         "torch.set_num_threads, or parallel_batches)")  # fmt: skip
    system, config = open_model(path)
    if quantize is None and system.task in INT8_PAYS:  # a folder exported --quantize int8
        quantize = (config.get("weights") or {}).get("quantize")
    predictor_class = PREDICTORS.get(system.task)
    if predictor_class is None:
        raise ValueError(f"{path}: no predictor for task {system.task!r}")
    given = task_options(
        path, system.task, predictor_class.options, confidence=confidence, n_best=n_best,
        beam_size=beam_size, length_penalty=length_penalty, max_tokens=max_tokens,
        pretokenized=pretokenized, documents=documents, vectors=vectors,
    )  # fmt: skip
    network = system.network
    if quantize is not None:
        from seqnlp.quantize import check_cpu
        from seqnlp.quantize import quantize as quantize_network

        check_cpu(device)
        quantize_network(network, quantize)
    network.to(device)
    options = {**system.predictor_options(), **given}
    predictor = predictor_class(network, system.codec, batch_size=batch_size,
                                parallel_batches=parallel_batches, **options)  # fmt: skip
    predictor.card = card_fields(config)
    return predictor
