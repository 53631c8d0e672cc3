"""One contract for every network and every system, in the spirit of AllenNLP's
``ModelTestCase``: a task (and any later one) describes its network and its system
once, as a ``NetworkCase`` and a ``SystemCase``, and ``test_contract.py`` holds each
to the same checks.

Networks (plain ``nn.Module``s, tensors in and out):
- a few optimiser steps on one batch lower its loss, and every parameter that
  trains receives a gradient;
- its state dict loaded into a freshly built network gives the same outputs;
- a padded batch gives each example the outputs it gets alone.

Systems (Lightning modules with their codec, data and predictor):
- a short fit with a real Trainer writes a checkpoint that ``load_system`` and
  ``seqnlp.load`` rebuild alone, with the same weights, codec and predictions;
- every parameter receives a gradient from the training loss;
- prediction in batches equals prediction one input at a time;
- the system's validation metric equals the predictor's ``evaluate`` on the same file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

Batch = dict[str, torch.Tensor]


@dataclass
class NetworkCase:
    """A network and how to feed it.

    build: a fresh network (random weights from the global seed).
    examples: per-example inputs, in whatever form ``collate`` takes.
    collate: examples -> the keyword arguments of one padded batch.
    outputs: (network, batch) -> one output tensor per example, padding cut away.
    loss: (network, batch) -> the scalar training loss.
    frozen: names of parameters that are not meant to train.
    """

    name: str
    build: Callable[[], nn.Module]
    examples: Sequence[Any]
    collate: Callable[[Sequence[Any]], Batch]
    outputs: Callable[[nn.Module, Batch], list[torch.Tensor]]
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    frozen: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


def check_network_trains(case: NetworkCase, steps: int = 15) -> None:
    torch.manual_seed(0)
    network = case.build().train()
    batch = case.collate(case.examples)
    loss = case.loss(network, batch)
    loss.backward()
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad or name in case.frozen:
            continue
        assert parameter.grad is not None, f"{case}: {name} gets no gradient"
        assert parameter.grad.abs().sum() > 0, f"{case}: {name} gets a zero gradient"
    optimiser = torch.optim.Adam(network.parameters(), lr=0.01)
    first = loss.item()
    for _ in range(steps):
        optimiser.step()
        optimiser.zero_grad()
        loss = case.loss(network, batch)
        loss.backward()
    # Fitting one batch: an untouched loss would mean the gradients do not reach it.
    assert loss.item() < first, f"{case}: loss {first:.4f} -> {loss.item():.4f} on one batch"


def check_network_round_trips(case: NetworkCase) -> None:
    torch.manual_seed(0)
    network = case.build()
    optimiser = torch.optim.Adam(network.parameters(), lr=0.01)
    batch = case.collate(case.examples)
    for _ in range(3):  # trained weights, not the initial ones
        optimiser.zero_grad()
        case.loss(network, batch).backward()
        optimiser.step()
    torch.manual_seed(1)
    loaded = case.build()
    loaded.load_state_dict(network.state_dict())
    network.eval(), loaded.eval()
    with torch.no_grad():
        for mine, theirs in zip(case.outputs(network, batch), case.outputs(loaded, batch),
                                strict=True):  # fmt: skip
            torch.testing.assert_close(theirs, mine, rtol=0, atol=0)


def check_batched_equals_alone(case: NetworkCase) -> None:
    torch.manual_seed(0)
    network = case.build().eval()
    with torch.no_grad():
        together = case.outputs(network, case.collate(case.examples))
        for i, example in enumerate(case.examples):
            (alone,) = case.outputs(network, case.collate([example]))
            torch.testing.assert_close(alone, together[i], rtol=1e-4, atol=1e-5)


@dataclass
class SystemCase:
    """A system, its data and its predictor.

    data: tmp_path -> a DataModule with train and validation splits, set up for fit.
    build: codec -> a system with small sizes.
    inputs: raw inputs for ``predict`` (empty ones included).
    validation: tmp_path -> (the validation file as ``evaluate`` reads it, its
        reader options); the system's ``val/metric`` must equal its ``metric``.
    metric: the main metric's name.
    predict_options: the options of ``seqnlp.load`` for the predictions compared.
    """

    name: str
    data: Callable[[Path], pl.LightningDataModule]
    build: Callable[[Any], pl.LightningModule]
    inputs: Sequence[Any]
    validation: Callable[[Path], tuple[str, dict[str, Any]]]
    metric: str
    predict_options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def fit_briefly(case: SystemCase, tmp_path: Path) -> tuple[pl.Trainer, Any, Any]:
    """A few training steps with a real Trainer; returns it, the system and the data."""
    pl.seed_everything(0)
    data = case.data(tmp_path)
    system = case.build(data.codec)
    trainer = pl.Trainer(max_steps=4, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(system, datamodule=data)
    return trainer, system.eval(), data


def predictor_of(system: Any, **options: Any) -> Any:
    """The system's predictor, as ``seqnlp.load`` would build it from its checkpoint."""
    from seqnlp.predict import PREDICTORS

    merged = {**system.predictor_options(), **options}
    return PREDICTORS[system.task](system.network, system.codec, **merged)


def records_close(got: list[dict], expected: list[dict], tolerance: float = 2e-4) -> None:
    """Records equal, their floats (probabilities, confidences) within ``tolerance``."""

    def close(a: Any, b: Any, where: str) -> None:
        if isinstance(a, float) or isinstance(b, float):
            assert abs(a - b) <= tolerance, f"{where}: {a} != {b}"
        elif isinstance(a, dict):
            assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: {a} != {b}"
            for key in a:
                close(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{where}[{i}]")
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        close(g, e, f"record {i}")


def check_system_round_trips(case: SystemCase, tmp_path: Path) -> None:
    import seqnlp
    from seqnlp.checkpoints import load_system

    trainer, system, _ = fit_briefly(case, tmp_path)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = load_system(ckpt)
    assert type(loaded) is type(system) and loaded.codec == system.codec
    assert loaded.state_dict().keys() == system.state_dict().keys()
    for name, value in system.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)
    expected = predictor_of(system, **case.predict_options).predict(case.inputs)
    assert seqnlp.load(ckpt, **case.predict_options).predict(case.inputs) == expected


def check_system_gradients(case: SystemCase, tmp_path: Path) -> None:
    pl.seed_everything(0)
    data = case.data(tmp_path)
    system = case.build(data.codec).train()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    system.training_loss(batch).backward()
    for name, parameter in system.named_parameters():
        assert parameter.grad is not None, f"{case}: {name} gets no gradient"
        assert parameter.grad.abs().sum() > 0, f"{case}: {name} gets a zero gradient"


def check_predictions_batched_equal_alone(case: SystemCase, tmp_path: Path) -> None:
    _, system, _ = fit_briefly(case, tmp_path)
    batched = predictor_of(system, batch_size=3, **case.predict_options).predict(case.inputs)
    alone = predictor_of(system, batch_size=1, **case.predict_options)
    records_close([alone.predict([item])[0] for item in case.inputs], batched)


def check_validation_equals_evaluate(case: SystemCase, tmp_path: Path) -> None:
    trainer, system, data = fit_briefly(case, tmp_path)
    (metrics,) = trainer.validate(copy.deepcopy(system), datamodule=data, verbose=False)
    source, options = case.validation(tmp_path)
    scores = predictor_of(system, **case.predict_options).evaluate(source, **options)
    assert abs(metrics[f"val/{case.metric}"] - scores[case.metric]) < 1e-3
