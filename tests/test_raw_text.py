"""Raw text in: the pretokenizer and normaliser a model carries, character offsets,
documents, and the spaCy component (issue 15)."""

from __future__ import annotations

import json
import pickle

import pytest
import pytorch_lightning as pl
import spacy
import torch
from contract import predictor_of
from hypothesis import given, settings
from hypothesis import strategies as st

from seqnlp.checkpoints import load_system
from seqnlp.cli import main
from seqnlp.data import ClassificationDataModule, TaggingDataModule
from seqnlp.data.classification import ClassificationCodec
from seqnlp.data.translation import TranslationCodec
from seqnlp.tasks import Classifier, Tagger
from seqnlp.text import Pretokenizer, RawText, TextNormalizer

SST_TOKENS = [
    "the", "film", "is", "n't", "bad", "-lrb-", "really", "-rrb-", ",", "it", "'s", "a", "``",
    "self-indulgent", "''", "mess", ".",
]  # fmt: skip


def test_the_spacy_pretokenizer_splits_punctuation_with_offsets():
    text = "Ana García vive en Lima, Perú. Dijo: «hola»."
    spans = Pretokenizer("spacy", "es").spans(text)
    tokens = [text[s:e] for s, e in spans]
    assert tokens[:8] == ["Ana", "García", "vive", "en", "Lima", ",", "Perú", "."]
    sentences = Pretokenizer("spacy", "es").sentences(text)
    assert len(sentences) == 2 and text[sentences[1][0][0] :].startswith("Dijo")
    assert Pretokenizer("whitespace").spans("Lima, Perú.") == [(0, 5), (6, 11)]
    with pytest.raises(ValueError, match="spaCy has no language 'klingon'"):
        Pretokenizer("spacy", "klingon")


def test_what_the_training_tokens_imply_is_applied_to_raw_text():
    normalizer = TextNormalizer.fit(SST_TOKENS)
    assert normalizer.state_dict() == {
        "lowercase": True, "ptb_brackets": True, "ptb_quotes": True, "straight_quotes": True,
        "split_clitics": True, "join_hyphens": True, "bracket_case": "lower",
        "curly_quotes": False, "zero_digits": False,
    }  # fmt: skip
    raw = RawText(Pretokenizer("spacy", "en"), normalizer)
    text = "The film isn't bad (really), it's a “self-indulgent” mess."
    tokens, spans = raw.tokenize(text)
    assert tokens == SST_TOKENS
    assert [text[s:e] for s, e in spans][2:4] == ["is", "n't"]  # offsets into the raw text
    cased = TextNormalizer.fit(["Ana", "vive", "en", '"', "Lima", '"', "-"])
    assert not cased.lowercase and not cased.ptb_quotes and cased.straight_quotes
    assert cased.normalize("“Lima”") == '"Lima"'
    masked = TextNormalizer.fit(["El", "“", "hola", "”", "en", "0000", "y", "00"])
    assert masked.curly_quotes and masked.zero_digits and not masked.straight_quotes
    tokens, _ = RawText(Pretokenizer("spacy", "es"), masked).tokenize('Dijo "hola" en 1999.')
    assert tokens == ["Dijo", "“", "hola", "”", "en", "0000", "."]
    assert TextNormalizer.from_state(normalizer.state_dict()).state_dict() == (
        normalizer.state_dict()
    )


def test_kept_token_forms_give_what_fresh_ones_give():
    """``tokens`` keeps each raw token's forms; quotes still open and close by their
    place in each text, and a changed setting or a copy starts afresh."""
    normalizer = TextNormalizer.fit(SST_TOKENS)
    raw = RawText(Pretokenizer("spacy", "en"), normalizer)
    texts = ['He said "no" and "yes".', '"Why" isn\'t it (odd)?', 'A "b', '"c" isn\'t "d"']
    kept = [raw.tokenize(text) for text in texts * 2]
    assert kept[:4] == kept[4:]
    assert kept[0][0] == ["he", "said", "``", "no", "''", "and", "``", "yes", "''", "."]
    assert kept[3][0] == ["``", "c", "''", "is", "n't", "``", "d", "''"]
    for text, found in zip(texts, kept, strict=False):
        fresh = TextNormalizer.from_state(normalizer.state_dict())
        assert RawText(Pretokenizer("spacy", "en"), fresh).tokenize(text) == found
    normalizer.lowercase = False  # the forms kept under the old setting go
    assert raw.tokenize('"Why" isn\'t it?')[0][:2] == ["``", "Why"]
    copied = pickle.loads(pickle.dumps(normalizer))
    assert "_forms" not in normalizer.state_dict() and not copied._forms
    assert copied.state_dict() == normalizer.state_dict()


def test_a_classifier_trained_on_tokenized_text_reads_raw_text_alike(tmp_path):
    data = ClassificationDataModule(dataset="sample_sentiment", cache_dir=str(tmp_path / "hf"))
    codec = data.codec
    assert codec.pretokenized and codec.raw.normalizer.lowercase
    assert codec.encode_raw("Great film!") == codec.encode_text("great film !")
    model = Classifier(codec, embedding_dim=8, hidden_size=8).eval()
    predictor = predictor_of(model)
    raw, tokenized = predictor.predict(["Great film!", "great film !"])
    assert raw["probabilities"] == tokenized["probabilities"]
    again = ClassificationCodec.from_state(codec.state_dict())
    assert again == codec and again.encode_raw("Great film!") == codec.encode_raw("Great film!")


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    pl.seed_everything(0)
    data = TaggingDataModule(dataset="sample_ner", batch_size=16, cache_dir=str(root / "hf"))
    model = Tagger(data.codec, word_dim=16, char_dim=8, char_hidden=8, hidden_size=16)
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=0.01)  # type: ignore[method-assign]
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=root)  # fmt: skip
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "tagger.ckpt")
    return root / "tagger.ckpt"


def test_raw_sentences_are_split_and_entities_point_into_the_line(tagger):
    predictor = predictor_of(load_system(tagger))
    line = "Ana García vive en Lima, Perú."
    (record,) = predictor.predict([line])
    assert record["tokens"][4:6] == ["Lima", ","]  # not "Lima,"
    for token, (start, end) in zip(record["tokens"], record["token_offsets"], strict=True):
        assert line[start:end] == token
    assert record["entities"], "the sample is learnt: Lima is a place"
    for entity in record["entities"]:
        assert line[entity["start_char"] : entity["end_char"]] == entity["text"]
    (kept,) = predictor_of(load_system(tagger), pretokenized=True).predict([line])
    assert "Lima," in kept["tokens"]  # --pretokenized: split on white space only


@settings(max_examples=40, deadline=None)
@given(line=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"),
                    max_size=60))  # fmt: skip
def test_any_line_gives_offsets_into_itself(tagger, line):
    (record,) = predictor_of(load_system(tagger), confidence=False).predict([line])
    assert len(record["tokens"]) == len(record["token_offsets"]) == len(record["tags"])
    for token, (start, end) in zip(record["tokens"], record["token_offsets"], strict=True):
        assert line[start:end] == token and token.strip()
    for entity in record["entities"]:
        assert line[entity["start_char"] : entity["end_char"]] == entity["text"]


def test_a_document_is_split_into_sentences_with_offsets_into_it(tagger, tmp_path, capsys):
    doc = "Ana García vive en Lima. Luis trabaja en Repsol desde 2001."
    src = tmp_path / "docs.txt"
    src.write_text(doc + "\n\n", encoding="utf-8")
    main(["predict", "--ckpt_path", str(tagger), "--input", str(src), "--input_format",
          "document", "--no_progress"])  # fmt: skip
    first, empty = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert empty == {"text": "", "sentences": [], "entities": []}
    assert [doc[s["start_char"] : s["end_char"]] for s in first["sentences"]] == [
        "Ana García vive en Lima.", "Luis trabaja en Repsol desde 2001.",
    ]  # fmt: skip
    assert first["entities"]
    for entity in first["entities"]:
        assert doc[entity["start_char"] : entity["end_char"]] == entity["text"]


def test_jsonl_inputs_can_name_their_text_field(tagger, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"sentence": "Ana vive en Lima."}) + "\n", encoding="utf-8")
    main(["predict", "--ckpt_path", str(tagger), "--input", str(src), "--text_field",
          "sentence", "--no_progress"])  # fmt: skip
    assert json.loads(capsys.readouterr().out)["tokens"] == ["Ana", "vive", "en", "Lima", "."]


def test_the_translator_gives_raw_sources_its_training_quotes():
    sources = ['der "rote" hund', "die katze"] * 20
    codec = TranslationCodec.fit(sources, ["the dog", "the cat"] * 20, vocab_size=30)
    codec.source_normalizer = TextNormalizer(straight_quotes=True)
    assert codec.encode_source("der „rote“ hund") == codec.encode_source('der "rote" hund')


def test_the_spacy_component_sets_entities_and_categories(tagger, tmp_path):
    nlp = spacy.blank("es")
    nlp.add_pipe("seqnlp", config={"model": str(tagger)})
    doc = nlp("Ana García vive en Lima, Perú.")
    assert doc.ents and all(e.label_ in ("PER", "LOC", "ORG", "MISC") for e in doc.ents)
    assert {e.text for e in doc.ents} <= {"Ana García", "Ana", "García", "Lima", "Perú"}

    pl.seed_everything(0)
    data = ClassificationDataModule(dataset="sample_sentiment", cache_dir=str(tmp_path / "hf"))
    model = Classifier(data.codec, embedding_dim=8, hidden_size=8)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(tmp_path / "clf.ckpt")
    english = spacy.blank("en")
    english.add_pipe("seqnlp", config={"model": str(tmp_path / "clf.ckpt")})
    docs = list(english.pipe(["Great film!", "A dull, dull movie."]))
    for doc in docs:
        assert set(doc.cats) == {"0", "1"} and abs(sum(doc.cats.values()) - 1) < 1e-3
    with pytest.raises(ValueError, match="needs config"):
        spacy.blank("en").add_pipe("seqnlp")


def test_tokens_the_corpus_writes_whole_stay_whole():
    from seqnlp.text import whole_tokens

    spacy_es = Pretokenizer("spacy", "es")
    sentences = [["Castilla.", "y", "León"], ["R/P", "sube"], ["hoy", ","], ["hoy,", "no"],
                 ["hoy", ",", "sí"]]  # fmt: skip
    whole = whole_tokens(sentences, spacy_es)
    assert set(whole) == {"Castilla.", "R/P"}  # "hoy," is written split more often
    raw = RawText(spacy_es, TextNormalizer(), whole)
    tokens, spans = raw.tokenize("Castilla. R/P hoy, Castilla .")
    assert tokens == ["Castilla.", "R/P", "hoy", ",", "Castilla", "."]
    assert spans[0] == (0, 9)


def test_a_tagger_is_scored_on_raw_text_by_character_spans(tagger, tmp_path, capsys):
    predictor = predictor_of(load_system(tagger))
    lines = ["Ana García vive en Lima, Perú.", "Luis trabaja en Repsol."]
    records = predictor.predict(lines)
    gold = tmp_path / "raw.jsonl"
    rows = [{"text": line, "entities": [{k: e[k] for k in ("type", "start_char", "end_char")}
                                        for e in r["entities"]]}
            for line, r in zip(lines, records, strict=True)]  # fmt: skip
    rows[1]["entities"].append({"type": "PER", "start_char": 0, "end_char": 4})  # "Luis"
    gold.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")  # fmt: skip
    main(["evaluate", "--ckpt_path", str(tagger), "--input", str(gold)])
    scores = json.loads(capsys.readouterr().out)
    found = sum(len(r["entities"]) for r in records)
    predicted_luis = ("PER", 0, 4) in {
        (e["type"], e["start_char"], e["end_char"]) for e in records[1]["entities"]
    }
    assert scores["texts"] == 2 and scores["precision"] == 100.0
    assert scores["recall"] == pytest.approx(100 * found / (found + (not predicted_luis)))
    rows[0]["entities"] = [{"type": "FOO", "start_char": 0, "end_char": 3}]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt_path", str(tagger), "--input", str(gold)])
    assert "raw.jsonl:1: entity type FOO is not one the model predicts" in capsys.readouterr().err
    rows[0]["entities"] = [{"type": "PER", "start_char": 5, "end_char": 99}]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt_path", str(tagger), "--input", str(gold)])
    assert "raw.jsonl:1: expected each entity as" in capsys.readouterr().err
