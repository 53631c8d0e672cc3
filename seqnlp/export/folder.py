"""The exported model folder's layout, and reading it without torch.

A folder written by ``seqnlp export`` (Hugging Face Hub layout, no pickle anywhere)::

    config.json          task, system class and hyper-parameters, labels, prediction
                         defaults, weights' dtype, recorded scores and run, ONNX graphs
    model.safetensors    the network's weights
    codec.json           the codec's settings; its large parts are the files below
    vocab.NAME.json      each vocabulary (words, characters, tags, labels)
    NAME.model           each SentencePiece model
    raw_text.json        how raw text becomes tokens (pretokenizer, learned normaliser)
    recipe.yaml          the resolved training recipe
    README.md            the model card
    onnx/*.onnx          with ``--format onnx``: the graphs (``seqnlp.export.onnx``)

This module imports neither torch nor Lightning: ONNX Runtime prediction reads
folders through it, and the torch loader (``seqnlp.export.loading``) does too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the layout this version writes (``config.json``'s ``folder_format``).
FOLDER_FORMAT = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CODEC = "codec.json"
RECIPE = "recipe.yaml"
CARD = "README.md"

#: a codec entry kept in a file of its own: (key, file name).
_OWN_FILES = {"raw": "raw_text.json", "source_normalizer": "source_normalizer.json"}
_FILE_KEY = "$file"


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding an exported model (its ``config.json``)."""
    return Path(path).is_dir() and (Path(path) / CONFIG).is_file()


def codec_files(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A codec's state as ``codec.json``'s skeleton and the files it points to.

    Vocabularies become ``vocab.PATH.json``, SentencePiece models ``PATH.model`` and
    the raw-text settings ``raw_text.json`` (``PATH``: the keys leading to the part,
    joined by dots). Returns (skeleton, {file name: bytes}).
    """
    files: dict[str, bytes] = {}

    def walk(value: Any, path: list[str]) -> Any:
        name = ".".join(path)
        if isinstance(value, bytes):  # a SentencePiece model's serialised proto
            file = f"{'.'.join(path[:-1]) or 'sentencepiece'}.model"
            files[file] = value
            return {_FILE_KEY: file}
        if isinstance(value, dict) and set(value) == {"symbols", "pad", "unk"}:
            file = f"vocab.{name.removesuffix('.vocab') or 'vocab'}.json"
            files[file] = _json_bytes(value)
            return {_FILE_KEY: file}
        if isinstance(value, dict) and len(path) == 1 and path[0] in _OWN_FILES:
            file = _OWN_FILES[path[0]]
            files[file] = _json_bytes(value)
            return {_FILE_KEY: file}
        if isinstance(value, dict):
            return {k: walk(v, [*path, str(k)]) for k, v in value.items()}
        return value

    return walk(state, []), files


def read_codec_state(folder: str | Path) -> dict[str, Any]:
    """The codec state (as ``Codec.from_state`` takes it) of an exported folder."""
    folder = Path(folder)
    skeleton = read_json(folder / CODEC)

    def walk(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {_FILE_KEY}:
            file = folder / value[_FILE_KEY]
            if Path(value[_FILE_KEY]).name != value[_FILE_KEY] or not file.is_file():
                raise ValueError(f"{folder / CODEC}: names a file that is not in the folder "
                                 f"({value[_FILE_KEY]!r})")  # fmt: skip
            return file.read_bytes() if file.suffix == ".model" else read_json(file)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(skeleton)


def read_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of an exported folder, checked for what loading needs."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ValueError(f"{folder}: not a seqnlp model folder (no {CONFIG}; `seqnlp export` "
                         f"writes one)")  # fmt: skip
    config = read_json(path)
    for key, kind in (("task", str), ("class_path", str), ("hyper_parameters", dict),
                      ("folder_format", int)):  # fmt: skip
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{path}: no {key} ({kind.__name__}): not a seqnlp model folder")
    if config["folder_format"] > FOLDER_FORMAT:
        raise ValueError(f"{path}: written by a newer seqnlp (folder format "
                         f"{config['folder_format']}); upgrade seqnlp to read it")  # fmt: skip
    return config


def codec_of(folder: str | Path, task: str) -> Any:
    """The codec object of an exported folder (torch-free)."""
    from seqnlp.data.codecs import ClassificationCodec, TaggingCodec, TranslationCodec

    types = {"tagging": TaggingCodec, "classification": ClassificationCodec,
             "translation": TranslationCodec}  # fmt: skip
    if task not in types:
        raise ValueError(f"{folder}: unknown task {task!r}")
    try:
        return types[task].from_state(read_codec_state(folder))
    except (KeyError, TypeError, AttributeError, RuntimeError) as err:
        raise ValueError(f"{folder}: its codec files cannot be read "
                         f"({type(err).__name__}: {err})") from None  # fmt: skip


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read JSON ({err})") from None


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
