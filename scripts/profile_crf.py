"""How much of a tagger training step and of tagging prediction goes to the CRF.

pytorch-crf's forward algorithm (the log-likelihood's normaliser) and its Viterbi
decoding loop over time steps in Python. This times, on the recipe's bucketed
CoNLL-2002 Spanish batches after a warm-up, the parts of a training step
(emissions forward, CRF negative log-likelihood forward, backward of both, Adam)
and of prediction (emissions, Viterbi), and prints each part's share:

    SEQNLP_DATA=../shared/data python scripts/profile_crf.py --threads 2
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import yaml
from bench import PEER, ROOT  # scripts/ is on sys.path when run as a script

from seqnlp.data import TaggingDataModule
from seqnlp.tasks import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", choices=["recipe", "peer"], default="recipe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    recipe = yaml.safe_load((ROOT / "recipes" / "ner.yaml").read_text())
    model_args, data_args = recipe["model"]["init_args"], recipe["data"]["init_args"]
    if args.size == "peer":
        model_args = {**model_args, **PEER["tagging"][0]}
        data_args = {**data_args, **PEER["tagging"][1]}
    data = TaggingDataModule(**data_args)
    data.setup("fit")
    model = Tagger(data.codec, **model_args)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the recipes
    assert model.network.crf is not None
    times: dict[str, float] = defaultdict(float)
    batches = iter(data.train_dataloader())

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        times[name] += time.perf_counter() - start

    model.train()
    for step in range(10 + args.steps):
        if step == 10:
            times.clear()
        batch = next(batches)
        with timed("emissions forward"):
            emissions = model.emissions(batch)
        # the two parts' graphs, timed apart: the CRF runs on a detached copy
        leaf = emissions.detach().requires_grad_()
        with timed("CRF log-likelihood forward"):
            nll = model.network.crf.neg_log_likelihood(leaf, batch.tags, batch.mask)
        optimiser.zero_grad(set_to_none=True)
        with timed("CRF backward"):
            nll.backward()
        with timed("emissions backward"):
            emissions.backward(leaf.grad)
        with timed("optimiser step"):
            optimiser.step()
    report("training step", times)

    model.eval()
    times.clear()
    with torch.inference_mode():
        for batch in data.val_dataloader():
            with timed("emissions forward"):
                emissions = model.emissions(batch)
            with timed("Viterbi decoding"):
                model.network.crf.decode(emissions, batch.mask)
    report("prediction (validation split, batch 256)", times)


def report(title: str, times: dict[str, float]) -> None:
    total = sum(times.values())
    print(f"\n{title}: {total:.2f} s")
    for name, seconds in times.items():
        print(f"  {name:28s} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")


if __name__ == "__main__":
    main()
