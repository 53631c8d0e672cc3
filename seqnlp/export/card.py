"""The model card (``README.md``) of an exported folder: Hugging Face Hub front matter
with a ``model-index`` of the scores the checkpoint recorded, then what the model is,
how it was trained and measured, how to use it, and what it cannot do."""

from __future__ import annotations

from typing import Any

import yaml

#: per task: the Hub's pipeline tag, a task name, the main metric and its name.
_TASKS = {
    "tagging": ("token-classification", "Named entity recognition", "f1", "entity F1 (seqeval)"),
    "classification": ("text-classification", "Text classification", "accuracy", "accuracy"),
    "translation": ("translation", "Translation", "bleu", "BLEU (sacreBLEU)"),
}
_WHAT = {
    "tagging": "a BiLSTM{crf} sequence tagger (named entities, IOB2 output with character "
    "offsets)",
    "classification": "a recurrent ({cell}) text classifier",
    "translation": "a recurrent ({cell}) encoder-decoder translator with attention",
}
_LIMITS = {
    "tagging": [
        "It finds only the entity types it was trained on: {types}.",
        "It was trained on {data}; text of another domain, period or spelling convention "
        "(social media, all caps, OCR) scores lower than the figures above.",
        "Raw text is split by the pretokenizer saved with it; input tokenized another way "
        "should be given as tokens (`--pretokenized` or token lists).",
    ],
    "classification": [
        "It predicts only the labels {labels}, and always one of them, even for text it "
        "has no basis to judge.",
        "It was trained on {data}; accuracy elsewhere (other domains, long documents, "
        "sarcasm) is not measured.",
    ],
    "translation": [
        "It translates single sentences; long inputs and other domains than {data} "
        "translate worse than the BLEU above suggests, and it can hallucinate or drop "
        "content without warning.",
        "Translations are not checked by a person: do not use them where errors matter.",
    ],
}


def model_card(config: dict[str, Any], recipe: str | None) -> str:
    """The card's text for an export folder's ``config`` and its training ``recipe``."""
    task = config["task"]
    pipeline, task_name, metric, metric_name = _TASKS[task]
    data = config.get("data") or {}
    dataset = str(data.get("dataset") or data.get("train") or "unknown")
    language = data.get("language") or [v for k in ("src_lang", "tgt_lang") if (v := data.get(k))]
    results = []
    scores = config.get("scores") or {}
    for split in ("validation", "test"):
        split_scores = scores.get(split)
        if not split_scores:
            continue
        metrics = []
        if metric in split_scores:
            metrics.append({"type": metric, "value": split_scores[metric],
                            "name": f"{metric_name}, {split}"})  # fmt: skip
        for extra in ("precision", "recall", "macro_f1", "chrf"):
            if extra in split_scores:
                metrics.append({"type": extra, "value": split_scores[extra],
                                "name": f"{extra}, {split}"})  # fmt: skip
        if metrics:
            results.append({"task": {"type": pipeline, "name": task_name},
                            "dataset": {"name": dataset, "type": dataset, "split": split},
                            "metrics": metrics})  # fmt: skip
    front: dict[str, Any] = {"library_name": "seqnlp", "pipeline_tag": pipeline,
                             "tags": ["seqnlp", "pytorch", "rnn", task]}  # fmt: skip
    if language:
        front["language"] = language if isinstance(language, list) else [language]
    front["model-index"] = [{"name": config.get("name", "model"), "results": results}]
    hp = config["hyper_parameters"]
    what = _WHAT[task].format(crf="-CRF" if hp.get("head", "crf") == "crf" else "",
                              cell=str(hp.get("cell", "lstm")).upper())  # fmt: skip
    labels = config.get("labels") or {}
    types = sorted({t.partition("-")[2] for t in labels.get("tags", []) if t != "O"})
    run = config.get("run") or {}
    fill = {"types": ", ".join(types) or "none", "labels": labels.get("labels"), "data": dataset}
    limits = [f"- {line.format(**fill)}" for line in _LIMITS[task]]
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# {config.get('name', 'model')}", "",
        f"A seqnlp {config['seqnlp_version']} model: {what}, "
        f"{config['network']['parameters']:,} parameters. Its tokenizer, vocabularies and "
        f"raw-text normalisation are in this folder; nothing in it is a pickle.", "",
        "## Use", "", "```python", "import seqnlp", "",
        f'model = seqnlp.load("{config.get("name", "DIR")}")  # this folder, or hf://ORG/NAME',
        f"print(model.predict([{_example(task)!r}]))", "```", "",
        "or `python -m seqnlp predict --model DIR --input FILE`, "
        "`python -m seqnlp serve DIR`"
        + (", or with ONNX Runtime alone: `seqnlp.load(DIR, runtime=\"onnx\")`."
           if config.get("onnx") else "."), "",
        "## Training", "",
        f"- Data: {_describe(data)}",
        f"- Command: `{run['command']}`" if run.get("command") else "- Command: not recorded",
        f"- Training time: {run['train_seconds']:,.0f} s" if "train_seconds" in run else
        "- Training time: not recorded",
        f"- Hardware: {run.get('hardware', 'not recorded')}",
        f"- Started: {run['started']}" if run.get("started") else "",
        "- The resolved recipe is `recipe.yaml`." if recipe else "",
        f"- Weights: {config['weights']['dtype']}"
        + (f", quantized {config['weights']['quantize']} when loaded"
           if config["weights"].get("quantize") else ""), "",
        "## Scores", "",
        *_score_lines(scores), "",
        "## Intended use and limitations", "",
        f"Intended for {task_name.lower()} of text like its training data ({dataset}), as a "
        "research baseline or a fast CPU component.", "",
        *limits,
        "",
    ]  # fmt: skip
    return "\n".join(line for line in lines if line is not None) + "\n"


def card_fields(config: dict[str, Any]) -> dict[str, Any]:
    """What ``/metadata`` and ``Predictor.metadata()`` show of a folder's card: name,
    scores, data, run (without the recipe), weights; empty for a checkpoint."""
    if not config:
        return {}
    keep = ("name", "seqnlp_version", "scores", "data", "run", "weights", "network",
            "exported_from")  # fmt: skip
    return {k: config[k] for k in keep if k in config}


def _score_lines(scores: dict[str, Any]) -> list[str]:
    if not scores:
        return ["No scores were recorded with this checkpoint (`seqnlp test` records them)."]
    out = [] if "test" in scores else [
        "No test scores were recorded (`seqnlp test RECIPE --ckpt_path CKPT` records them "
        "in the checkpoint; export it again afterwards).", ""]
    out += ["| split | metric | value |", "|---|---|---:|"]
    for split, values in scores.items():
        for key, value in values.items():
            if isinstance(value, float | int) and "_" not in key:
                out.append(f"| {split} | {key} | {value:.2f} |")
        for key in ("bleu_signature", "chrf_signature"):
            if key in values:
                out.append(f"| {split} | {key.replace('_', ' ')} | `{values[key]}` |")
    return out


def _describe(data: dict[str, Any]) -> str:
    if not data:
        return "not recorded"
    return ", ".join(f"{k} `{v}`" for k, v in data.items())


def _example(task: str) -> str:
    return {"tagging": "Ana García vive en Lima, Perú.", "classification": "Great film!",
            "translation": "Ein Mann fährt Fahrrad."}[task]  # fmt: skip
