"""Prediction with ONNX Runtime and NumPy: an exported model folder's ONNX graphs
(``seqnlp export --format onnx``) in, the same records as the torch predictors out.

Never imports torch or Lightning: the codecs, readers, record building and metrics
are the torch predictors' own torch-free code (``seqnlp.data.codecs``,
``seqnlp.predict.*_records``), the graphs run in ONNX Runtime, and the rest (padding,
the CRF, the search) is NumPy. ``pip install 'seqnlp[onnx]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqnlp.export.card import card_fields
from seqnlp.export.folder import codec_of, is_model_folder, read_config
from seqnlp.export.loading import resolve
from seqnlp.predict.base import Predictor, task_options

#: each task's options, and their defaults where the model does not fix them.
_OPTIONS: dict[str, dict[str, Any]] = {
    "tagging": {"confidence": True, "n_best": 1, "pretokenized": False, "documents": False},
    "classification": {"pretokenized": None},
    "translation": {"beam_size": 5, "n_best": 1, "length_penalty": 0.0, "max_tokens": 8192},
}
_EXPORT = "export it with --format onnx (seqnlp export CKPT DIR --format onnx)"


def load(
    path: str | Path,
    *,
    quantize: str | None = None,
    batch_size: int | None = None,
    confidence: bool | None = None,
    n_best: int | None = None,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    max_tokens: int | None = None,
    pretokenized: bool | None = None,
    documents: bool | None = None,
    threads: int | None = None,
    device: str | None = None,
    parallel_batches: int | None = None,
    vectors: str | None = None,
) -> Predictor:
    """The ONNX Runtime predictor of an exported model folder, built once with every
    option: ``seqnlp.load(DIR, runtime="onnx").predict(texts)``.

    Args:
        path: a folder written by ``seqnlp export --format onnx``, or
            ``hf://ORG/NAME[@REVISION]``.
        quantize: ``int8``: the folder's int8 graphs (exported with ``--quantize
            int8``). Default: int8 if the folder was exported so, else float32.
        batch_size: inputs per batch (default 64).
        confidence, n_best, pretokenized, documents, beam_size, length_penalty,
            max_tokens: the task's options, as ``seqnlp.predict.load`` takes them
            (None: the task's default, or the model's).
        threads: batches predicted at once, each on one thread (default: the CPUs
            this process may use; ``seqnlp.onnx_runtime.base.OnnxPredictor``).
        device, parallel_batches: only ``cpu`` and 1: ONNX Runtime runs on the CPU in
            this process, with ``threads`` for the CPUs it uses.
        vectors: refused: vocabulary extension at prediction is the torch runtime's
            (the graphs hold a fixed embedding).

    An option left at None takes the task's default; one given for a task it does not
    apply to (``beam_size`` for a tagger) is refused.
    """
    if device not in (None, "cpu"):
        raise ValueError(f"the onnx runtime runs on the CPU only, not {device!r}")
    if parallel_batches not in (None, 1):
        raise ValueError("parallel_batches is for the torch runtime (the onnx runtime's "
                         "threads option says how many batches run at once)")  # fmt: skip
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be int8, got {quantize!r}")
    if vectors is not None:
        raise ValueError("vectors extend a model's vocabulary under the torch runtime "
                         "only (the ONNX graphs hold a fixed embedding)")  # fmt: skip
    folder = resolve(path)
    if not is_model_folder(folder):
        raise ValueError(f"{path}: the onnx runtime reads an exported model folder (`seqnlp "
                         f"export CKPT DIR --format onnx`), not a checkpoint")  # fmt: skip
    config = read_config(folder)
    task = config["task"]
    if task not in _OPTIONS:
        raise ValueError(f"{path}: no ONNX Runtime predictor for task {task!r}")
    given = task_options(
        path, task, tuple(_OPTIONS[task]), confidence=confidence, n_best=n_best,
        beam_size=beam_size, length_penalty=length_penalty, max_tokens=max_tokens,
        pretokenized=pretokenized, documents=documents,
    )  # fmt: skip
    if (config.get("hyper_parameters") or {}).get("char_lm_specs"):
        raise ValueError(f"{path}: the model reads its text with character language models, "
                         f"which the ONNX graphs do not have: predict with the torch runtime "
                         f"(seqnlp.load without runtime='onnx')")  # fmt: skip
    info = config.get("onnx")
    if not isinstance(info, dict):
        raise ValueError(f"{path}: no ONNX graph in the model folder: {_EXPORT}")
    if quantize is None:
        quantize = (config.get("weights") or {}).get("quantize")
        quantize = quantize if quantize == "int8" and info.get("int8") else None
    options = {**_OPTIONS[task], **(config.get("prediction") or {}), **given}
    codec = codec_of(folder, task)
    batch_size = 64 if batch_size is None else batch_size
    predictor: Predictor
    if task == "translation":
        from seqnlp.onnx_runtime.translator import OnnxTranslationPredictor

        predictor = OnnxTranslationPredictor(
            folder, config, codec, batch_size, options["beam_size"], options["n_best"],
            options["length_penalty"], options["max_tokens"],
            options.get("max_length_ratio", 1.5), options.get("max_length_offset", 10), quantize,
            threads,
        )  # fmt: skip
    else:
        graph = _graph(folder, info, quantize, shown=str(path))
        if task == "tagging":
            from seqnlp.onnx_runtime.tagger import OnnxTaggingPredictor

            chars = info.get("chars")
            chars = None if chars is None else _graph(folder, chars, quantize, shown=str(path))
            predictor = OnnxTaggingPredictor(graph, codec, info.get("crf"), batch_size, threads,
                                             chars, **options)  # fmt: skip
        else:
            from seqnlp.onnx_runtime.classifier import OnnxClassificationPredictor

            predictor = OnnxClassificationPredictor(graph, codec, batch_size, threads, **options)
    predictor.card = card_fields(config)
    return predictor


def _graph(folder: Path, entry: dict[str, Any], quantize: str | None, shown: str) -> Path:
    """The file of a graph's ``config.json`` entry (``graph``, ``int8``) that ``quantize``
    asks for, checked to be in the folder."""
    name = entry.get("int8") if quantize == "int8" else entry.get("graph")
    if quantize == "int8" and not name:
        raise ValueError(f"{shown}: no int8 ONNX graph in the model folder: export it with "
                         f"--format onnx --quantize int8")  # fmt: skip
    if not isinstance(name, str) or not (folder / name).is_file():
        raise ValueError(f"{shown}: the ONNX graph {name!r} is not in the model folder: "
                         f"{_EXPORT}")  # fmt: skip
    return folder / name
