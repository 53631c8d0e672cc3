"""Translation data: SentencePiece vocabularies, batches, the DataModule."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from seqnlp.data.translation import TranslationCodec, TranslationDataModule

WORDS_DE = ["der", "hund", "die", "katze", "läuft", "schläft", "im", "park", "haus", "rot"]
WORDS_EN = ["the", "dog", "the", "cat", "runs", "sleeps", "in", "park", "house", "red"]


def write_pairs(prefix: Path, n: int, seed: int) -> Path:
    """Line-aligned prefix.de / prefix.en files of a word-for-word 'language pair'."""
    rng = random.Random(seed)
    de, en = [], []
    for _ in range(n):
        idx = [rng.randrange(len(WORDS_DE)) for _ in range(rng.randint(2, 7))]
        de.append(" ".join(WORDS_DE[i] for i in idx))
        en.append(" ".join(WORDS_EN[i] for i in idx))
    prefix.with_suffix(".de").write_text("\n".join(de) + "\n", encoding="utf-8")
    prefix.with_suffix(".en").write_text("\n".join(en) + "\n", encoding="utf-8")
    return prefix


@pytest.fixture()
def pairs(tmp_path: Path) -> dict[str, Path]:
    return {s: write_pairs(tmp_path / s, n, i) for i, (s, n) in
            enumerate((("train", 200), ("dev", 30), ("test", 30)))}  # fmt: skip


@pytest.mark.parametrize("joint", [True, False])
def test_vocab_round_trip_and_specials(pairs, tmp_path, joint):
    data = TranslationDataModule(
        train=str(pairs["train"]), validation=str(pairs["dev"]), joint_vocab=joint,
        vocab_size=60, cache_dir=str(tmp_path / "hf"),
    )  # fmt: skip
    vocab = data.codec
    # joint: the target side is the shared model's pieces that the targets use
    assert (getattr(vocab.target, "base", None) is vocab.source) == joint
    ids = vocab.encode_source("der hund läuft")
    assert ids[-1] == vocab.source.eos_id and vocab.source.bos_id not in ids
    assert vocab.decode_target(vocab.encode_target("the red house")) == "the red house"
    again = TranslationCodec.from_state(vocab.state_dict())
    assert again == vocab and again.encode_source("im park") == vocab.encode_source("im park")


def test_batches_shift_targets_and_mask_padding(pairs, tmp_path):
    data = TranslationDataModule(
        train=str(pairs["train"]), validation=str(pairs["dev"]), vocab_size=60, batch_size=8,
        cache_dir=str(tmp_path / "hf"),
    )  # fmt: skip
    data.setup("fit")
    bos, eos = data.codec.target.bos_id, data.codec.target.eos_id
    seen = 0
    for batch in data.train_dataloader():
        assert batch.tgt_in is not None and batch.tgt_out is not None and batch.tgt_mask is not None
        assert (batch.tgt_in[:, 0] == bos).all()
        lengths = batch.tgt_mask.sum(dim=1)
        for row, n in enumerate(lengths.tolist()):
            assert batch.tgt_out[row, n - 1] == eos
            assert batch.tgt_in[row, 1:n].tolist() == batch.tgt_out[row, : n - 1].tolist()
            assert (batch.tgt_out[row, n:] == 0).all() and (
                batch.src_ids[row][~batch.src_mask[row]] == 0
            ).all()
        assert (
            batch.src_ids[range(len(batch)), batch.src_lengths - 1] == data.codec.source.eos_id
        ).all()
        seen += len(batch)
    assert seen == 200


def test_cache_follows_both_files_and_long_pairs_are_dropped(pairs, tmp_path):
    data = TranslationDataModule(train=str(pairs["train"]), vocab_size=60, max_train_length=4,
                                 cache_dir=str(tmp_path / "hf"))  # fmt: skip
    data.setup("fit")
    kept = data.datasets["train"]
    assert 0 < len(kept) < 200
    assert all(len(t) <= 4 for t in kept["target_ids"])
    # Changing only the target file changes what is read (the cache key spans both files).
    en = pairs["train"].with_suffix(".en")
    lines = en.read_text(encoding="utf-8").splitlines()
    en.write_text("\n".join(["the dog", *lines[1:]]) + "\n", encoding="utf-8")
    fresh = TranslationDataModule(train=str(pairs["train"]), vocab_size=60,
                                  cache_dir=str(tmp_path / "hf"))  # fmt: skip
    assert fresh.raw("train")[0]["target"] == "the dog"


def test_token_budget_reaches_the_sampler(pairs, tmp_path):
    data = TranslationDataModule(train=str(pairs["train"]), vocab_size=60, batch_size=64,
                                 max_tokens=60, cache_dir=str(tmp_path / "hf"))  # fmt: skip
    data.setup("fit")
    lengths = data.example_lengths("train")
    for batch in data.train_dataloader().batch_sampler:
        assert len(batch) * max(lengths[i] for i in batch) <= 60 or len(batch) == 1


def test_joint_target_side_keeps_only_the_pieces_targets_use(pairs, tmp_path):
    def vocab(target_pieces):
        return TranslationDataModule(
            train=str(pairs["train"]), vocab_size=60, target_pieces=target_pieces,
            cache_dir=str(tmp_path / "hf"),
        ).codec  # fmt: skip

    used, full = vocab("used"), vocab("all")
    assert used.source.state_dict() == full.source.state_dict() and full.target is full.source
    assert 4 < len(used.target) < len(full.target)  # no German-only pieces
    targets = pairs["train"].with_suffix(".en").read_text(encoding="utf-8").splitlines()
    for text in targets[:50]:
        ids = used.encode_target(text)
        assert all(0 <= i < len(used.target) for i in ids) and used.target.unk_id not in ids
        assert used.decode_target(ids) == full.decode_target(full.encode_target(text)) == text
        assert [used.target.id_to_piece(i) for i in ids] == [
            full.target.id_to_piece(i) for i in full.encode_target(text)
        ]
    assert used.target.unk_id in used.encode_target("hund")  # a German-only word
    assert (used.target.pad_id, used.target.bos_id, used.target.eos_id) == (0, 2, 3)
    again = TranslationCodec.from_state(used.state_dict())
    assert again == used and again.encode_target("the red house") == used.encode_target(
        "the red house"
    )
    # a checkpoint written before target pieces existed loads with the full model
    old = {k: v for k, v in full.state_dict().items() if k != "target_pieces"}
    assert TranslationCodec.from_state(old) == full
