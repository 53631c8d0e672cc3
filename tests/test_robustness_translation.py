"""Robustness of the translator's inputs: parallel files of any bytes, prediction on any
text, very long sources, translator checkpoints given where they do not belong.

Every user error is a ``ValueError`` naming the file and line (one ``seqnlp: error:``
line from the CLI), never an IndexError, KeyError, UnicodeDecodeError or JSON error."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import test_robustness as robustness
import torch
from contract import predictor_of
from hypothesis import given, settings
from hypothesis import strategies as st
from test_translation_data import WORDS_DE, write_pairs

from seqnlp.checkpoints import load_system
from seqnlp.cli import main
from seqnlp.data.parallel_readers import read_parallel
from seqnlp.data.translation import TranslationDataModule
from seqnlp.models import TranslatorNetwork
from seqnlp.nn.search import Hypothesis
from seqnlp.predict import predict_file
from seqnlp.tasks import Translator

ROOT = robustness.ROOT
ner_files = robustness.ner_files  # module-scoped fixtures, shared rather than copied
tagger_ckpt = robustness.tagger_ckpt
BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A directory for files that each hypothesis example overwrites."""
    return tmp_path_factory.mktemp("scratch")


# -- 1. read_parallel on generated text and on any bytes ---------------------------------------
# A model of the readers: lines split at b"\n" only, strictly UTF-8, a byte-order mark at the
# start of a file dropped, trailing "\r" (of "\r\n") dropped; blank lines skipped.
class Bad(Exception):
    """What read_parallel must raise: a ValueError whose message starts with ``where``."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def model_lines(path: Path, data: bytes) -> Iterator[str]:
    """The lines, one at a time: a reader stops at the first bad one, decoding or not."""
    raws = data.split(b"\n")
    if raws[-1] == b"":
        raws.pop()
    for lineno, raw in enumerate(raws, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad(f"{path}:{lineno}: cannot decode line as utf-8") from None
        yield (line.removeprefix("\ufeff") if lineno == 1 else line).rstrip("\r")


def model_files(prefix: Path, src_data: bytes, tgt_data: bytes) -> list[dict[str, str]]:
    src_file, tgt_file = Path(f"{prefix}.de"), Path(f"{prefix}.en")
    src = list(model_lines(src_file, src_data))  # each file whole, then the pairs
    tgt = list(model_lines(tgt_file, tgt_data))
    if len(src) != len(tgt):
        raise Bad(f"{src_file} has {len(src)} lines but {tgt_file} has {len(tgt)}: expected")
    records = []
    for lineno, (source, target) in enumerate(zip(src, tgt, strict=True), start=1):
        if source.strip() and target.strip():
            records.append({"source": source, "target": target})
        elif source.strip() or target.strip():
            empty = src_file if not source.strip() else tgt_file
            raise Bad(f"{empty}:{lineno}: expected a sentence")
    if not records:
        raise Bad(f"{src_file} and {tgt_file}: expected at least one sentence pair")
    return records


def model_tsv(path: Path, data: bytes) -> list[dict[str, str]]:
    records = []
    for lineno, line in enumerate(model_lines(path, data), start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 2 or not cells[0].strip() or not cells[1].strip():
            raise Bad(f"{path}:{lineno}: expected ")
        records.append({"source": cells[0], "target": cells[1]})
    if not records:
        raise Bad(f"{path}: expected at least one sentence pair")
    return records


def model_jsonl(path: Path, data: bytes) -> list[dict[str, str]]:
    records = []
    for lineno, line in enumerate(model_lines(path, data), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            json.dumps(obj, ensure_ascii=False).encode("utf-8")  # no lone surrogate
        except (ValueError, RecursionError, UnicodeEncodeError):
            raise Bad(f"{path}:{lineno}: expected ") from None
        if not isinstance(obj, dict):
            raise Bad(f"{path}:{lineno}: expected an object")
        values = [obj.get(field) for field in ("source", "target")]
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise Bad(f"{path}:{lineno}: expected ")
        records.append({"source": values[0], "target": values[1]})
    if not records:
        raise Bad(f"{path}: expected at least one sentence pair")
    return records


def agrees_with_model(read, model) -> None:
    """``read()`` returns what ``model()`` returns, or raises the ValueError it predicts."""
    try:
        expected = model()
    except Bad as bad:
        with pytest.raises(ValueError) as info:
            read()
        assert str(info.value).startswith(bad.where), (str(info.value), bad.where)
        assert "\n" not in str(info.value)
        return
    assert read() == expected


# Byte pieces that readers trip on: line ends, NUL, a byte-order mark, a UTF-8-encoded
# surrogate (invalid), stray and truncated multi-byte sequences, U+2028 and U+0085 (line
# separators to str.splitlines, not to the readers), JSON fragments and escapes (a lone
# surrogate, a pair, huge numbers), and a long run.
PIECES = [
    b"\n", b"\r\n", b"\r", b"\t", b" ", b"\x00", BOM, b"\xed\xa0\x80", b"\xff", b"\xc3",
    b"\xc3\xa9", b"\xe2\x80\xa8", b"\xc2\x85", b"\xf0\x9f\x98\x80", b"Hund", b"dog",
    b'{"source": ', b'"target": ', b'"x"', b'""', b'"\\ud800"', b'"\\udc00x"',
    b'"\\ud83d\\ude00"', b"null", b"1e999", b"9" * 5000, b"[", b"]", b"{", b"}", b", ",
    b"\\", b'"', b"a" * 20_000,
]  # fmt: skip
RANDOM_BYTES = st.one_of(
    st.binary(max_size=80),
    st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join),
)
# A sentence: any characters but the line break (and surrogates, which no file can hold),
# not blank, not ending in "\r" (part of a CRLF line break) or starting with U+FEFF (a
# byte-order mark at the start of a file).
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\n")
SENTENCE = st.text(CHARS, min_size=1, max_size=25).filter(
    lambda s: s.strip() and not s.endswith("\r") and not s.startswith("\ufeff")
)
PAIRS = st.lists(st.tuples(SENTENCE, SENTENCE), min_size=1, max_size=8)


def _write_lines(lines: list[str], newline: str, bom: bool, final: bool) -> bytes:
    return (BOM if bom else b"") + (newline.join(lines) + (newline if final else "")).encode()


@settings(max_examples=100, deadline=None)
@given(pairs=PAIRS, newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(),
       final=st.booleans())  # fmt: skip
def test_files_read_back_what_was_written(scratch, pairs, newline, bom, final):
    prefix = scratch / "written"
    Path(f"{prefix}.de").write_bytes(_write_lines([s for s, _ in pairs], newline, bom, final))
    Path(f"{prefix}.en").write_bytes(_write_lines([t for _, t in pairs], newline, bom, final))
    assert read_parallel(str(prefix), "de", "en") == [{"source": s, "target": t} for s, t in pairs]
    assert read_parallel(str(prefix), "en", "de") == [{"source": t, "target": s} for s, t in pairs]


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(SENTENCE, SENTENCE).filter(lambda p: "\t" not in p[0] + p[1]),
                      min_size=1, max_size=8),
       newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())  # fmt: skip
def test_tsv_reads_back_what_was_written(scratch, pairs, newline, bom):
    path = scratch / "written.tsv"
    path.write_bytes(_write_lines([f"{s}\t{t}" for s, t in pairs], newline, bom, True))
    assert read_parallel(str(path)) == [{"source": s, "target": t} for s, t in pairs]


# JSON can hold any text: line breaks, tabs, quotes, backslashes, U+2028 included.
JSON_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=25).filter(
    str.strip
)


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(JSON_TEXT, JSON_TEXT), min_size=1, max_size=8),
       ascii_only=st.booleans(), blank=st.sampled_from(["", "  ", "\t"]),
       bom=st.booleans())  # fmt: skip
def test_jsonl_reads_back_what_was_written(scratch, pairs, ascii_only, blank, bom):
    path = scratch / "written.jsonl"
    lines = [
        json.dumps({"id": i, "source": s, "target": t}, ensure_ascii=ascii_only)
        for i, (s, t) in enumerate(pairs)
    ]
    path.write_bytes(_write_lines([blank, *lines, blank], "\n", bom, True))
    assert read_parallel(str(path)) == [{"source": s, "target": t} for s, t in pairs]


@settings(max_examples=200, deadline=None)
@given(src=RANDOM_BYTES, tgt=RANDOM_BYTES)
def test_files_of_any_bytes_give_pairs_or_a_located_error(scratch, src, tgt):
    prefix = scratch / "random"
    Path(f"{prefix}.de").write_bytes(src)
    Path(f"{prefix}.en").write_bytes(tgt)
    agrees_with_model(
        lambda: read_parallel(str(prefix), "de", "en"), lambda: model_files(prefix, src, tgt)
    )


@settings(max_examples=200, deadline=None)
@given(data=RANDOM_BYTES)
def test_tsv_of_any_bytes_gives_pairs_or_a_located_error(scratch, data):
    path = scratch / "random.tsv"
    path.write_bytes(data)
    agrees_with_model(lambda: read_parallel(str(path)), lambda: model_tsv(path, data))


@settings(max_examples=200, deadline=None)
@given(data=RANDOM_BYTES)
def test_jsonl_of_any_bytes_gives_pairs_or_a_located_error(scratch, data):
    path = scratch / "random.jsonl"
    path.write_bytes(data)
    agrees_with_model(lambda: read_parallel(str(path)), lambda: model_jsonl(path, data))


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"source": "\\ud800", "target": "x"}', "lone UTF-16 surrogate"),
        ('{"source": "a", "target": "b", "note": ["\\udfff"]}', "lone UTF-16 surrogate"),
        ('\ufeff{"source": "a", "target": "b"}', "Unexpected UTF-8 BOM"),  # a BOM mid-file
        ("[" * 100_000 + "]" * 100_000, "expected a JSON object"),
        ('{"source": 1e999999, "target": "b"}', "non-empty string, found inf"),
    ],
    ids=["lone-surrogate", "nested-lone-surrogate", "bom-on-line-2", "deep", "huge-number"],
)
def test_jsonl_bad_lines_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"source": "\\ud83d\\ude00 a", "target": "b"}\n' + line + "\n",
                    encoding="utf-8")  # fmt: skip
    with pytest.raises(ValueError, match=match) as info:
        read_parallel(str(path))
    assert str(info.value).startswith(f"{path}:2: ")


def test_a_byte_order_mark_is_not_part_of_the_first_sentence(tmp_path):
    prefix = tmp_path / "bom"
    Path(f"{prefix}.de").write_bytes(BOM + b"Ein Hund.\n")
    Path(f"{prefix}.en").write_bytes(BOM + b"A dog.\r\n")
    assert read_parallel(str(prefix), "de", "en") == [{"source": "Ein Hund.", "target": "A dog."}]
    (tmp_path / "bom.jsonl").write_bytes(BOM + b'{"source": "a", "target": "b"}\n')
    assert read_parallel(str(tmp_path / "bom.jsonl")) == [{"source": "a", "target": "b"}]


@pytest.mark.parametrize("fmt", ["files", "tsv", "jsonl"])
def test_very_long_lines_are_read_whole(tmp_path, fmt):
    source, target = " ".join(["der hund"] * 250_000), "the dog " * 200_000  # 2 MB, 1.6 MB
    if fmt == "files":
        path = str(tmp_path / "long")
        Path(f"{path}.de").write_text(f"kurz\n{source}\n", encoding="utf-8")
        Path(f"{path}.en").write_text(f"short\n{target}\n", encoding="utf-8")
    elif fmt == "tsv":
        path = str(tmp_path / "long.tsv")
        Path(path).write_text(f"kurz\tshort\n{source}\t{target}\n", encoding="utf-8")
    else:
        path = str(tmp_path / "long.jsonl")
        rows = [{"source": "kurz", "target": "short"}, {"source": source, "target": target}]
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    records = read_parallel(path, "de", "en")
    assert records[1] == {"source": source, "target": target}


# -- 2. translator prediction input -------------------------------------------------------
@pytest.fixture(scope="module")
def mt_ckpt(tmp_path_factory) -> Path:
    """A tiny translator fit for one short epoch by a plain ``Trainer`` (it translates
    badly: often up to its length limit, which is what the long-input tests want)."""
    root = tmp_path_factory.mktemp("mt")
    pl.seed_everything(0)
    data = TranslationDataModule(train=str(write_pairs(root / "train", 200, 0)), vocab_size=60,
                                 batch_size=16, cache_dir=str(root / "hf"))  # fmt: skip
    model = Translator(data.codec, embedding_dim=8, hidden_size=8, dropout=0.0)
    trainer = robustness._trainer(root)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "mt.ckpt")
    return root / "mt.ckpt"


@pytest.fixture(scope="module")
def translator(mt_ckpt) -> Translator:
    system = load_system(mt_ckpt)
    assert isinstance(system, Translator)
    return system


ODD_LINES = [
    "der hund läuft",
    "e\u0301\u0301\u0301 o\u0308\u0304 combining marks",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 right to left",
    "\u202eder hund\u202c \u200fim park\u200e",  # bidi overrides and marks
    "\U0001f469\u200d\U0001f469\u200d\U0001f467 \U0001f3f3\ufe0f\u200d\U0001f308",  # ZWJ
    "\U0001f44d\U0001f3fd \U0001f1e9\U0001f1ea",  # skin tone, flag
    "\u200b", "\u200d", "\ufeff", "\u2060",  # zero-width, not whitespace to str.strip
    "a\u2028b\u2029c\x85d", "\u2028", "\u2029", "\x85", "\x0b\x0c\x1c",  # separators
    "\x00", "der\x00hund", "\x7f\x1b[31m",
    "", " ", "\t", "\u3000", "\xa0", "\r", "der hund\r", " \r",  # empty, blank, CR
    "x" * 1500, "\U0001f642" * 300,  # one long word; many emoji
]  # fmt: skip
LINE = st.one_of(st.text(CHARS, max_size=30), st.sampled_from(ODD_LINES))


def _as_read(lines: list[str], fmt: str) -> list[str]:
    """The sources the predictor sees for ``lines`` written as a text or JSON-lines file."""
    if fmt == "jsonl":
        return lines
    first = [lines[0].removeprefix("\ufeff")]  # a byte-order mark
    return [ln.rstrip("\r") for ln in first + lines[1:]]


def _translate_file(predictor, lines: list[str], fmt: str) -> tuple[list[dict], list[str]]:
    """Predict ``lines`` written as ``in.txt`` or ``in.jsonl``: the JSON-lines records and
    the lines of the text output."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"in.{'jsonl' if fmt == 'jsonl' else 'txt'}"
        if fmt == "jsonl":
            src.write_text("".join(json.dumps({"text": ln}) + "\n" for ln in lines),
                           encoding="utf-8")  # fmt: skip
        else:
            src.write_bytes("".join(ln + "\n" for ln in lines).encode("utf-8"))
        assert predict_file(predictor, str(src), str(Path(tmp) / "out.jsonl")) == len(lines)
        out_txt = str(Path(tmp) / "out.txt")
        assert predict_file(predictor, str(src), out_txt, output_fmt="text") == len(lines)
        records = (Path(tmp) / "out.jsonl").read_text(encoding="utf-8").split("\n")
        text = (Path(tmp) / "out.txt").read_text(encoding="utf-8").split("\n")
    assert records[-1] == "" and text[-1] == ""
    return [json.loads(r) for r in records[:-1]], text[:-1]


def _check_records(records: list[dict], text: list[str], sources: list[str]) -> None:
    assert [r["source"] for r in records] == sources  # one record per line, in order
    assert [r["translation"] for r in records] == text  # one output line per input line
    for r in records:
        assert isinstance(r["translation"], str) and "\n" not in r["translation"]
        if not r["source"].strip():
            assert r["translation"] == ""


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=10), beam=st.sampled_from([1, 3]),
       fmt=st.sampled_from(["text", "jsonl"]))  # fmt: skip
def test_any_text_gives_one_translation_per_line_in_order(translator, lines, beam, fmt):
    predictor = predictor_of(translator, batch_size=3, beam_size=beam)
    records, text = _translate_file(predictor, lines, fmt)
    _check_records(records, text, _as_read(lines, fmt))


@pytest.mark.parametrize("beam", [1, 4])
def test_odd_unicode_lines_translate_as_when_alone(translator, beam):
    predictor = predictor_of(translator, batch_size=4, beam_size=beam, n_best=min(beam, 2))
    records, text = _translate_file(predictor, ODD_LINES, "text")
    _check_records(records, text, _as_read(ODD_LINES, "text"))
    alone = [predictor.predict([line])[0] for line in _as_read(ODD_LINES, "text")]
    assert records == alone  # batching (and its token budget) does not change a translation


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"text": "\\ud800 der hund"}', "lone UTF-16 surrogate"),
        ('{"text": 5}', "expected an object with 'text': a string, found 5"),
        ('{"text": null}', "found None"),
        ('{"text": ["der", "hund"]}', r"found \['der', 'hund'\]"),
        ('{"source": "der hund"}', "found no such field"),
        ('"der hund"', "found 'der hund', not an object"),
        ("{", "expected a JSON object"),
    ],
)
def test_bad_json_lines_input_names_file_and_line(translator, tmp_path, line, match):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "der hund"}\n\n' + line + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    with pytest.raises(ValueError, match=match) as info:
        predict_file(predictor_of(translator, beam_size=2), str(src), str(out))
    assert str(info.value).startswith(f"{src}:3: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no .part


def test_standard_input_gives_one_translation_per_line(mt_ckpt):
    lines = ["\ufeffder hund", "", "im park\r", "a\rb\u2028c\x85d", "\u2028", "der hund"]
    proc = subprocess.run(
        [sys.executable, "-m", "seqnlp", "predict", "--ckpt_path", str(mt_ckpt), "--input", "-",
         "--beam_size", "2"],
        input="".join(ln + "\n" for ln in lines).encode(), capture_output=True, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode().split("\n")
    assert len(out) == len(lines) + 1 and out[-1] == ""  # one line per input line
    assert out[1] == "" and out[4] == ""  # empty and blank lines stay empty
    assert out[0] == out[5]  # the byte-order mark at the start is dropped


def test_undecodable_standard_input_is_one_line_with_its_line(mt_ckpt):
    proc = subprocess.run(
        [sys.executable, "-m", "seqnlp", "predict", "--ckpt_path", str(mt_ckpt), "--input", "-",
         "--beam_size", "1"],
        input=b"der hund\n\ncaf\xe9\n", capture_output=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("seqnlp: error: <stdin>:3: cannot decode line as utf-8")
    assert proc.stdout == b""


# -- 3. very long inputs --------------------------------------------------------------------
LONG = 3_000


def test_a_3000_word_source_is_translated_whole_in_a_batch_of_its_own(translator, monkeypatch):
    long = " ".join(WORDS_DE[i % len(WORDS_DE)] for i in range(LONG))
    lines = ["der hund läuft", long, "", "die katze schläft im park"] + ["im haus"] * 10
    pieces = len(translator.codec.encode_source(long))
    assert pieces >= LONG + 1  # every word, then </s>
    h = translator.hparams
    limit = math.ceil(h.max_length_ratio * pieces) + h.max_length_offset
    shapes: list[tuple[int, int]] = []  # (sentences, source pieces) of each batch
    lengths: dict[int, list[tuple[int, int]]] = {}  # source pieces: (output pieces, limit)
    network = translator.network
    translate = network.translate

    def spy(state, bos, eos, max_lengths, *args, **kwargs):
        shapes.append(tuple(state["mask"].shape))
        found = translate(state, bos, eos, max_lengths, *args, **kwargs)
        for n, hyps, most in zip(state["mask"].sum(dim=1).tolist(), found, max_lengths.tolist(),
                                 strict=True):  # fmt: skip
            lengths.setdefault(n, []).append((len(hyps[0].tokens), most))
        return found

    monkeypatch.setattr(network, "translate", spy)
    for beam in (1, 4):
        shapes.clear()
        predictor = predictor_of(translator, batch_size=64, beam_size=beam)
        records = predictor.predict(lines)
        assert [r["source"] for r in records] == lines
        assert shapes[-1] == (1, pieces)  # encoded whole, alone
        assert all(rows * width <= predictor.max_tokens for rows, width in shapes)
        found, most = lengths.pop(pieces)[0]
        assert most == limit and found <= limit  # the output limit scales with the source
        short = predictor_of(translator, beam_size=beam).predict(lines[:1])
        assert records[0] == short[0]  # not padded to the long source's length


def test_beam_search_does_not_copy_the_encoder_states_at_every_step(translator, monkeypatch):
    source = " ".join(WORDS_DE[i % len(WORDS_DE)] for i in range(300))
    copies: list[int] = []
    select = TranslatorNetwork.select

    def spy(state, index):
        out = select(state, index)
        copies.append(out["keys"].data_ptr())
        return out

    network = translator.network
    step, eos = network.log_prob_step, translator.codec.target.eos_id

    def never_ending(tokens, state):  # so that the search runs to the length limit
        log_probs, state = step(tokens, state)
        return log_probs.index_fill(1, torch.tensor([eos]), float("-inf")), state

    monkeypatch.setattr(network, "log_prob_step", never_ending)
    monkeypatch.setattr(TranslatorNetwork, "select", staticmethod(spy))
    predictor = predictor_of(translator, beam_size=4, n_best=4)
    found = predictor.predict([source, "der hund"])
    pieces = len(translator.codec.encode_source(source))
    h = translator.hparams
    steps = math.ceil(h.max_length_ratio * pieces) + h.max_length_offset
    assert len(copies) == 1 + steps  # expand to the beams, then one select per step
    assert len(set(copies)) == 1  # the encoder states are copied once, then kept

    def copy_all(state, index):  # the plain reference: every state row picked every time
        hidden = state["hidden"]
        picked = tuple(h.index_select(1, index) for h in hidden) if isinstance(hidden, tuple) \
            else hidden.index_select(1, index)  # fmt: skip
        rest = {k: v.index_select(0, index) for k, v in state.items() if k != "hidden"}
        return {**rest, "hidden": picked}

    monkeypatch.setattr(TranslatorNetwork, "select", staticmethod(copy_all))
    assert predictor.predict([source, "der hund"]) == found


def test_a_translation_cut_by_the_length_limit_is_logged(translator, monkeypatch, caplog):
    def translate(state, bos, eos, max_lengths, *args):
        limits = max_lengths.tolist()
        lengths = [limits[0], limits[1] - 1]  # the first reaches its limit, the second ends
        return [[Hypothesis([5] * n, -1.0, -1.0)] for n in lengths]

    monkeypatch.setattr(translator.network, "translate", translate)
    with caplog.at_level(logging.WARNING, logger="seqnlp.predict"):
        predictor_of(translator, beam_size=1).predict(["der hund läuft", "die katze"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "length limit" in warnings[0] and "'die katze'" in warnings[0]  # shorter sorts first


def test_evaluate_on_files_of_different_line_counts_is_one_line(mt_ckpt, tmp_path):
    prefix = tmp_path / "test"
    Path(f"{prefix}.de").write_text("der hund\ndie katze\nim park\n", encoding="utf-8")
    Path(f"{prefix}.en").write_text("the dog\nthe cat\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "seqnlp", "evaluate", "--ckpt_path", str(mt_ckpt), "--input",
         str(prefix), "--src_lang", "de", "--tgt_lang", "en", "--beam_size", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("seqnlp: error:")]
    assert errors == [proc.stderr.rstrip("\n").splitlines()[-1]], proc.stderr
    assert f"{prefix}.de has 3 lines but {prefix}.en has 2" in errors[0]
    assert proc.stdout == ""


# -- 4. translator checkpoints where they do not belong, and the reverse ---------------------
@pytest.mark.parametrize("command", ["fit", "validate"])
def test_translator_checkpoint_given_to_the_tagging_recipe_is_one_line(
    command, ner_files, mt_ckpt, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([command, robustness.NER_RECIPE, *robustness._ner_data(ner_files, tmp_path),
              "--ckpt_path", str(mt_ckpt), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert exit_info.value.code == 2
    line = robustness._error_line(capsys)
    assert str(mt_ckpt) in line and "translation" in line and "tagging" in line, line
    assert line.index("translation") < line.index("tagging")  # a translator given to a tagger
    assert not (tmp_path / "runs").exists()  # nothing trained or logged


def test_tagger_checkpoint_given_to_attention_is_one_line(tagger_ckpt, tmp_path, capsys):
    png = tmp_path / "attention.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["attention", "--ckpt_path", str(tagger_ckpt), "--source", "der hund",
              "--output", str(png)])  # fmt: skip
    assert exit_info.value.code == 2
    line = robustness._error_line(capsys)
    assert line == f"seqnlp: error: {tagger_ckpt}: attention maps are for translators"
    assert not png.exists()
