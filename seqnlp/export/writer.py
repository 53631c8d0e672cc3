"""``seqnlp export``: a checkpoint in, a model folder out (``seqnlp.export.folder``).

The folder is written beside its final place and renamed into it whole, so a failed
or interrupted export leaves nothing half-written; an existing path is never
replaced.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from seqnlp.checkpoints import CKPT_KEY, hyper_parameters, read_checkpoint, system_class
from seqnlp.export.card import model_card
from seqnlp.export.folder import (
    CARD,
    CODEC,
    CONFIG,
    FOLDER_FORMAT,
    RECIPE,
    WEIGHTS,
    codec_files,
)

Precision = Literal["fp32", "bf16", "fp16"]
#: where ``--quantize int8`` pays off in torch (docs/benchmarks.md: translation 1.5-1.7x;
#: the tagger 0.87x and the classifier 1.08x, its fp32 LSTMs using oneDNN's fused kernel).
INT8_PAYS = ("translation",)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class ExportReport:
    """What ``export_model`` wrote: the folder, its files' sizes and the checkpoint's."""

    folder: Path
    files: dict[str, int] = field(default_factory=dict)
    checkpoint_bytes: int = 0

    @property
    def folder_bytes(self) -> int:
        return sum(self.files.values())

    def summary(self) -> str:
        ratio = self.checkpoint_bytes / max(self.folder_bytes, 1)
        return (f"{self.folder}: {len(self.files)} files, {_size(self.folder_bytes)} "
                f"(checkpoint {_size(self.checkpoint_bytes)}, {ratio:.1f}x larger)")  # fmt: skip


def export_model(
    ckpt_path: str | Path, output: str | Path, *, onnx: bool = False,
    quantize: str | None = None, precision: Precision = "fp32", name: str | None = None,
) -> ExportReport:  # fmt: skip
    """Write the model folder of checkpoint ``ckpt_path`` to ``output`` (which must not
    exist).

    Args:
        onnx: also write ONNX graphs (``seqnlp.export.onnx``) for ONNX Runtime.
        quantize: ``int8``: the folder's model is quantized when loaded (torch: dynamic
            int8 of the recurrent and linear layers; ONNX: int8 graphs beside the fp32
            ones). Offered for the tasks in ``INT8_PAYS`` in torch, for all with ONNX.
        precision: the weights' dtype in ``model.safetensors``: ``bf16`` / ``fp16``
            halve the folder; prediction computes in float32 on the CPU all the same.
        name: the model's name on its card (default: the folder's name).
    """
    from safetensors.torch import save_model

    from seqnlp.checkpoints import build_system

    output = Path(output)
    if output.exists() or output.is_symlink():
        raise ValueError(f"{output}: already exists; export writes a new folder (remove it "
                         f"or choose another path)")  # fmt: skip
    if not output.parent.is_dir():
        raise ValueError(f"{output.parent}: no such directory")
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of {', '.join(_DTYPES)}, got {precision!r}")
    ckpt = read_checkpoint(ckpt_path)
    meta = ckpt[CKPT_KEY]
    if meta["task"] == "language_model":
        raise ValueError(
            f"{ckpt_path}: seqnlp export does not take language models yet: the checkpoint "
            f"is the model (seqnlp.load, seqnlp generate), read weights-only"
        )
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be int8, got {quantize!r}")
    if quantize and not onnx and meta["task"] not in INT8_PAYS:
        raise ValueError(
            f"--quantize int8 does not pay off for a {meta['task']} model in torch (measured "
            f"0.87-1.08x, docs/benchmarks.md); it is offered for translation, or with "
            f"--format onnx"
        )
    cls = system_class(meta["class_path"])
    hparams = {k: v for k, v in hyper_parameters(ckpt).items()
               if k not in cls.training_only_hparams}  # fmt: skip
    system = build_system(cls, meta["codec"], hparams, ckpt["state_dict"], ckpt_path)
    network = system.network
    if precision != "fp32":
        network = network.to(_DTYPES[precision])
    work = output.parent / f".{output.name}.{os.getpid()}.part"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        save_model(network, str(work / WEIGHTS),
                   metadata={"format": "pt", "seqnlp_task": meta["task"]})  # fmt: skip
        network.float()
        skeleton, files = codec_files(meta["codec"])
        for file, data in files.items():
            (work / file).write_bytes(data)
        _write_json(work / CODEC, skeleton)
        run = dict(meta.get("run") or {})
        recipe = run.pop("recipe", None)
        if recipe:
            (work / RECIPE).write_text(recipe, encoding="utf-8")
        config: dict[str, Any] = {
            "seqnlp_version": _version(), "folder_format": FOLDER_FORMAT,
            "task": meta["task"], "class_path": meta["class_path"],
            "hyper_parameters": hparams,
            "network": {"class": type(system.network).__name__,
                        "parameters": sum(p.numel() for p in system.network.parameters())},
            "labels": _labels(system), "prediction": system.predictor_options(),
            "weights": {"file": WEIGHTS, "dtype": precision, "quantize": quantize},
            "scores": meta.get("scores") or {}, "run": run,
            "data": _data_of(ckpt), "name": name or output.name,
            "exported_from": Path(ckpt_path).name,
        }  # fmt: skip
        if onnx:
            from seqnlp.export.onnx import write_graphs

            config["onnx"] = write_graphs(system, work, quantize=quantize)
        _write_json(work / CONFIG, config)
        (work / CARD).write_text(model_card(config, recipe), encoding="utf-8")
        work.rename(output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    sizes = {str(p.relative_to(output)): p.stat().st_size
             for p in sorted(output.rglob("*")) if p.is_file()}  # fmt: skip
    return ExportReport(output, sizes, Path(ckpt_path).stat().st_size)


def _labels(system: Any) -> dict[str, list[str]]:
    codec = system.codec
    if system.task == "tagging":
        return {"tags": list(codec.tags.itos)}
    if system.task == "classification":
        return {"labels": list(codec.labels.itos)}
    return {}


def _data_of(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The DataModule's settings that say what the model was trained on."""
    saved = ckpt.get("datamodule_hyper_parameters") or {}
    keep = ("dataset", "train", "validation", "test", "language", "src_lang", "tgt_lang",
            "pretokenizer", "tag_scheme", "lowercase")  # fmt: skip
    data = {k: saved[k] for k in keep if saved.get(k) is not None}
    raw = ckpt[CKPT_KEY]["codec"].get("raw") or {}
    language = (raw.get("pretokenizer") or {}).get("language")
    if language and "language" not in data:  # the dataset's, as the pretokenizer took it
        data["language"] = language
    return data


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1, default=str) + "\n",
                    encoding="utf-8")  # fmt: skip


def _version() -> str:
    from seqnlp import __version__

    return __version__


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
