"""Readers, tag schemes and vocabularies, on tiny files written to tmp_path."""

from __future__ import annotations

import itertools
import json
import re
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from seqnlp.data.tagging import TaggingCodec
from seqnlp.data.tagging_readers import read_conll, read_tagging_file, read_tagging_jsonl
from seqnlp.data.tagschemes import (
    convert,
    detect_scheme,
    iob2_to_bioes,
    is_valid_tag,
    spans,
    to_iob2,
)
from seqnlp.tokenization import PAD, UNK, Vocab, normalize_word


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raises_at(
    path: Path, lineno: int | None, *fragments: str
) -> AbstractContextManager[pytest.ExceptionInfo[ValueError]]:
    """``pytest.raises(ValueError)`` whose message starts with ``path:lineno:``."""
    where = f"{path}:{lineno}:" if lineno is not None else f"{path}:"
    pattern = "^" + re.escape(where) + "".join(f"(?s:.*){re.escape(f)}" for f in fragments)
    return pytest.raises(ValueError, match=pattern)


# --- read_conll: columns, separators, blank lines -----------------------------------------


def test_space_separated_two_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conll", "Juan B-PER\nvive O\nen O\nMadrid B-LOC\n\nHola O\n")
    assert list(read_conll(path)) == [
        {"tokens": ["Juan", "vive", "en", "Madrid"], "tags": ["B-PER", "O", "O", "B-LOC"]},
        {"tokens": ["Hola"], "tags": ["O"]},
    ]


def test_tab_separated_token_may_hold_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "a.tsv", "New York\tB-LOC\nes\tO\ngrande \t O\n")
    assert list(read_conll(path)) == [
        {"tokens": ["New York", "es", "grande"], "tags": ["B-LOC", "O", "O"]}
    ]


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "crlf.conll"
    path.write_bytes(b"Juan B-PER\r\nvive O\r\n\r\nHola O\r\n")
    assert list(read_conll(path)) == [
        {"tokens": ["Juan", "vive"], "tags": ["B-PER", "O"]},
        {"tokens": ["Hola"], "tags": ["O"]},
    ]


def test_three_columns_default_tag_is_last(tmp_path: Path) -> None:
    path = write(tmp_path, "pos.conll", "De Art O\nJan N B-PER\nziet V O\n")
    assert list(read_conll(path)) == [
        {"tokens": ["De", "Jan", "ziet"], "tags": ["O", "B-PER", "O"]}
    ]
    # the POS column as tokens, tags still last
    assert list(read_conll(path, token_column=1)) == [
        {"tokens": ["Art", "N", "V"], "tags": ["O", "B-PER", "O"]}
    ]
    # tag_column=1 reads the POS column, which holds no valid tags
    with raises_at(path, 1, "column 1", "'Art'"):
        list(read_conll(path, tag_column=1))


def test_tag_column_one_on_two_columns_same_as_default(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conll", "Juan B-PER\nPérez I-PER\n\nsí O\n")
    assert list(read_conll(path, tag_column=1)) == list(read_conll(path))
    first, _ = read_conll(path, tag_column=1)
    assert first["tags"] == ["B-PER", "I-PER"]


def test_swapped_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "swapped.conll", "B-PER Juan\nO vive\n")
    assert list(read_conll(path, token_column=1, tag_column=0)) == [
        {"tokens": ["Juan", "vive"], "tags": ["B-PER", "O"]}
    ]


def test_no_tag_column_gives_tokens_only(tmp_path: Path) -> None:
    path = write(tmp_path, "raw.txt", "Juan\nvive\n\nHola\n")
    assert list(read_conll(path, tag_column=None)) == [
        {"tokens": ["Juan", "vive"]},
        {"tokens": ["Hola"]},
    ]


def test_blank_lines_several_leading_and_trailing(tmp_path: Path) -> None:
    text = "\n\na O\nb O\n\n\n   \n\t\nc B-LOC\n\n\n\n"
    path = write(tmp_path, "a.conll", text)
    assert list(read_conll(path)) == [
        {"tokens": ["a", "b"], "tags": ["O", "O"]},
        {"tokens": ["c"], "tags": ["B-LOC"]},
    ]


def test_last_sentence_without_trailing_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conll", "a O\n\nb B-PER")
    assert [r["tokens"] for r in read_conll(path)] == [["a"], ["b"]]


# --- -DOCSTART- ---------------------------------------------------------------------------


def test_docstart_alone_then_blank_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "a.conll", "-DOCSTART- O\n\nHola O\nMaría B-PER\n\n-DOCSTART- O\n\nsí O\n"
    )
    assert list(read_conll(path)) == [
        {"tokens": ["Hola", "María"], "tags": ["O", "B-PER"]},
        {"tokens": ["sí"], "tags": ["O"]},
    ]


def test_docstart_glued_to_sentence_start_dutch_style(tmp_path: Path) -> None:
    text = (
        "-DOCSTART- -DOCSTART- O\nDe Art O\ntekst N O\n\n"
        "Jan N B-PER\n\n"
        "-DOCSTART- -DOCSTART- O\nOp Prep O\n"
    )
    path = write(tmp_path, "ned.train", text)
    records = list(read_conll(path))
    assert records == [
        {"tokens": ["De", "tekst"], "tags": ["O", "O"]},
        {"tokens": ["Jan"], "tags": ["B-PER"]},
        {"tokens": ["Op"], "tags": ["O"]},
    ]
    assert read_tagging_file(path) == records


def test_docstart_only_file_has_no_sentence(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conll", "-DOCSTART- O\n\n-DOCSTART- O\n")
    assert list(read_conll(path)) == []
    with raises_at(path, None, "expected at least one sentence"):
        read_tagging_file(path)


# --- malformed CoNLL input ------------------------------------------------------------------


def test_too_few_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.conll", "-DOCSTART- O\n\nJuan B-PER\n\nvive\n")
    with raises_at(path, 5, "expected at least 2 columns", "found 1", "'vive'"):
        list(read_conll(path))


def test_lone_o_is_not_a_token_and_a_tag(tmp_path: Path) -> None:
    # A one-column line must not pass as token "O" with tag "O".
    path = write(tmp_path, "bad.conll", "Juan B-PER\nO\n")
    with raises_at(path, 2, "expected at least 2 columns", "found 1"):
        list(read_conll(path))


def test_too_few_columns_for_explicit_tag_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.conll", "De Art O\nJan B-PER\n")
    with raises_at(path, 2, "expected at least 3 columns", "tag column 2", "found 2"):
        list(read_conll(path, tag_column=2))


@pytest.mark.parametrize("bad", ["X-PER", "PER", "B-", "b-per", "B_PER"])
def test_invalid_tag(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, "bad.conll", f"Juan B-PER\n\nHola O\nMaría {bad}\n")
    with raises_at(path, 4, "expected a tag O, B-X, I-X, E-X or S-X", repr(bad)):
        list(read_conll(path))
    assert not is_valid_tag(bad)


def test_non_utf8_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conll"
    path.write_bytes(b"Hola O\n\nCaf\xff O\n")
    with raises_at(path, 3, "cannot decode", "utf-8"):
        list(read_conll(path))
    with raises_at(path, 3, "cannot decode"):
        read_tagging_file(path)
    # the right encoding reads it
    assert read_tagging_file(path, encoding="latin-1")[1]["tokens"] == ["Cafÿ"]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.conll", "")
    with raises_at(path, None, "expected at least one sentence, found none"):
        read_tagging_file(path)
    blank = write(tmp_path, "blank.conll", "\n\n  \n")
    with raises_at(blank, None, "expected at least one sentence"):
        read_tagging_file(blank)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.conll"
    with raises_at(path, None, "no such file"):
        read_tagging_file(path)


# --- JSONL ----------------------------------------------------------------------------------


def jsonl(tmp_path: Path, name: str, *lines: object) -> Path:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    return write(tmp_path, name, text)


def test_jsonl_reads_and_converts(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        "a.jsonl",
        {"tokens": ["Juan", "Pérez"], "tags": ["S-PER", "O"]},
        "",
        {"tokens": ["New York"], "tags": ["S-LOC"], "id": 3},
    )
    assert list(read_tagging_jsonl(path)) == [
        {"tokens": ["Juan", "Pérez"], "tags": ["S-PER", "O"]},
        {"tokens": ["New York"], "tags": ["S-LOC"]},
    ]
    assert read_tagging_file(path) == [
        {"tokens": ["Juan", "Pérez"], "tags": ["B-PER", "O"]},
        {"tokens": ["New York"], "tags": ["B-LOC"]},
    ]


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = jsonl(tmp_path, "bad.jsonl", {"tokens": ["a"], "tags": ["O"]}, '{"tokens": ["b"],')
    with raises_at(path, 2, "expected a JSON object"):
        read_tagging_file(path)


def test_jsonl_tags_length_mismatch(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path,
        "bad.jsonl",
        {"tokens": ["a"], "tags": ["O"]},
        "",
        {"tokens": ["b", "c"], "tags": ["O"]},
    )
    with raises_at(path, 3, "'tags'", "as long as 'tokens' (2)"):
        read_tagging_file(path)


def test_jsonl_missing_tokens(tmp_path: Path) -> None:
    path = jsonl(tmp_path, "bad.jsonl", {"words": ["a"], "tags": ["O"]})
    with raises_at(path, 1, "expected an object with 'tokens'"):
        read_tagging_file(path)
    not_strings = jsonl(tmp_path, "bad2.jsonl", {"tokens": [1, 2], "tags": ["O", "O"]})
    with raises_at(not_strings, 1, "'tokens': list of strings"):
        read_tagging_file(not_strings)


def test_jsonl_invalid_tag_and_optional_tags(tmp_path: Path) -> None:
    path = jsonl(tmp_path, "bad.jsonl", {"tokens": ["a", "b"], "tags": ["O", "PER"]})
    with raises_at(path, 1, "'PER'"):
        read_tagging_file(path)
    untagged = jsonl(tmp_path, "raw.jsonl", {"tokens": ["a", "b"]})
    assert list(read_tagging_jsonl(untagged, require_tags=False)) == [{"tokens": ["a", "b"]}]
    with raises_at(untagged, 1, "'tags'"):
        list(read_tagging_jsonl(untagged))


# --- tag schemes ----------------------------------------------------------------------------


def test_detect_scheme() -> None:
    assert detect_scheme([["B-PER", "I-PER", "O"], ["O", "B-LOC", "B-LOC"]]) == "iob2"
    assert detect_scheme([["B-PER", "I-PER"], ["O", "I-LOC"]]) == "iob1"
    assert detect_scheme([["I-PER", "O"]]) == "iob1"  # I- first in a sentence
    assert detect_scheme([["B-PER", "I-LOC"]]) == "iob1"  # I- after another type
    assert detect_scheme([["B-PER", "E-PER"], ["O"]]) == "bioes"
    assert detect_scheme([["O"], ["S-LOC"]]) == "bioes"
    assert detect_scheme([["O", "O"], []]) == "iob2"
    # a generator works (read_tagging_file passes one)
    assert detect_scheme(t for t in [["O", "I-PER"]]) == "iob1"


def test_to_iob2_from_iob1() -> None:
    # I- opening a chunk becomes B-; B- between two adjacent same-type chunks is kept
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG", "O", "I-PER"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "O", "B-PER"]
    assert to_iob2(iob1, "iob1") == iob2
    assert spans(iob2) == [
        ("PER", 0, 2),
        ("PER", 2, 3),
        ("LOC", 4, 5),
        ("ORG", 5, 7),
        ("PER", 8, 9),
    ]


def test_to_iob2_from_bioes() -> None:
    bioes = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-ORG", "E-ORG", "S-ORG", "S-ORG"]
    iob2 = ["B-PER", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "B-ORG", "B-ORG"]
    assert to_iob2(bioes, "bioes") == iob2
    assert convert(bioes, "bioes", "bioes") == bioes


def test_to_iob2_repairs_ill_formed_bioes_as_conlleval() -> None:
    # conlleval opens a chunk at I-/E- after O, E-, S- or another type
    assert to_iob2(["O", "I-PER", "E-PER"], "bioes") == ["O", "B-PER", "I-PER"]
    assert to_iob2(["S-PER", "I-PER"], "bioes") == ["B-PER", "B-PER"]
    assert to_iob2(["B-PER", "E-PER", "E-PER"], "bioes") == ["B-PER", "I-PER", "B-PER"]
    assert to_iob2(["B-PER", "I-LOC", "E-LOC"], "bioes") == ["B-PER", "B-LOC", "I-LOC"]
    assert spans(to_iob2(["S-PER", "I-PER"], "bioes")) == [("PER", 0, 1), ("PER", 1, 2)]


def test_to_iob2_repairs_ill_formed_iob2() -> None:
    assert to_iob2(["O", "I-PER", "I-PER", "I-LOC"], "iob2") == ["O", "B-PER", "I-PER", "B-LOC"]


def test_iob2_to_bioes() -> None:
    iob2 = ["B-PER", "I-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert iob2_to_bioes(iob2) == [
        "B-PER",
        "I-PER",
        "E-PER",
        "S-PER",
        "O",
        "S-LOC",
        "B-ORG",
        "E-ORG",
    ]
    assert convert(iob2, "iob2", "bioes") == iob2_to_bioes(iob2)


def _well_formed_iob2(tags: tuple[str, ...]) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


def test_bioes_roundtrip_brute_force() -> None:
    alphabet = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    checked = 0
    for n in range(5):
        for tags in itertools.product(alphabet, repeat=n):
            if not _well_formed_iob2(tags):
                continue
            iob2 = list(tags)
            bioes = iob2_to_bioes(iob2)
            assert len(bioes) == n
            assert to_iob2(bioes, "bioes") == iob2, (iob2, bioes)
            assert spans(to_iob2(bioes, "bioes")) == spans(iob2)
            assert to_iob2(iob2, "iob2") == iob2
            # BIOES well-formed: one S- or one B-...E- per chunk
            assert sum(t[0] in "BS" for t in bioes) == len(spans(iob2))
            assert sum(t[0] in "ES" for t in bioes) == len(spans(iob2))
            if spans(iob2):
                assert detect_scheme([bioes]) == "bioes"
            checked += 1
    # well-formed sequences of length 0..4: 1 + 3 + 11 + 41 + 153
    assert checked == 209


def test_read_tagging_file_converts_iob1_and_bioes_to_iob2(tmp_path: Path) -> None:
    tokens = ["Juan", "Pérez", "y", "Ana", "viven", "en", "Nueva", "York", ".", "Sí"]
    iob2 = ["B-PER", "I-PER", "O", "B-PER", "O", "O", "B-LOC", "I-LOC", "O", "O"]
    iob1 = ["I-PER", "I-PER", "O", "I-PER", "O", "O", "I-LOC", "I-LOC", "O", "O"]
    bioes = ["B-PER", "E-PER", "O", "S-PER", "O", "O", "B-LOC", "E-LOC", "O", "O"]
    adjacent_iob2 = ["B-PER", "B-PER", "I-PER"]
    adjacent_iob1 = ["I-PER", "B-PER", "I-PER"]
    adjacent_bioes = ["S-PER", "B-PER", "E-PER"]

    def conll(tags: list[str], adjacent: list[str]) -> str:
        first = "\n".join(f"{w} {t}" for w, t in zip(tokens, tags, strict=True))
        second = "\n".join(
            f"{w}\t{t}" for w, t in zip(["Ana", "Juan", "Pérez"], adjacent, strict=True)
        )
        return f"-DOCSTART- O\n\n{first}\n\n{second}\n"

    ref = read_tagging_file(write(tmp_path, "iob2.conll", conll(iob2, adjacent_iob2)))
    assert ref == [
        {"tokens": tokens, "tags": iob2},
        {"tokens": ["Ana", "Juan", "Pérez"], "tags": adjacent_iob2},
    ]
    assert read_tagging_file(write(tmp_path, "iob1.conll", conll(iob1, adjacent_iob1))) == ref
    assert read_tagging_file(write(tmp_path, "bioes.conll", conll(bioes, adjacent_bioes))) == ref
    # explicit scheme gives the same
    iob1_path = tmp_path / "iob1.conll"
    assert read_tagging_file(iob1_path, scheme="iob1") == ref


# --- Vocab ----------------------------------------------------------------------------------


def test_vocab_fit_order_and_specials() -> None:
    seqs = [["b", "a", "c"], ["a", "b", "d", "e"], ["e", "e"]]
    vocab = Vocab.fit(seqs)
    # e:3, then a,b (2, alphabetical), then c,d (1, alphabetical)
    assert vocab.itos == [PAD, UNK, "e", "a", "b", "c", "d"]
    assert vocab.pad_id == 0
    assert vocab.unk_id == 1
    assert vocab.index("a") == 3
    assert vocab.index("zzz") == vocab.unk_id
    assert vocab.encode(["e", "zzz", "d"]) == [2, 1, 6]
    assert vocab.decode([2, 1, 6]) == ["e", UNK, "d"]
    assert len(vocab) == 7
    assert "c" in vocab
    assert "zzz" not in vocab
    # same counts in another order fit the same vocabulary
    assert Vocab.fit(reversed(seqs)) == vocab


def test_vocab_min_freq_and_max_size() -> None:
    seqs = [["b", "a", "c"], ["a", "b", "d", "e"], ["e", "e"]]
    assert Vocab.fit(seqs, min_freq=2).itos == [PAD, UNK, "e", "a", "b"]
    assert Vocab.fit(seqs, min_freq=3).itos == [PAD, UNK, "e"]
    assert Vocab.fit(seqs, max_size=2).itos == [PAD, UNK, "e", "a"]
    assert Vocab.fit(seqs, min_freq=2, max_size=10).itos == [PAD, UNK, "e", "a", "b"]
    assert Vocab.fit(seqs, max_size=0).itos == [PAD, UNK]


def test_vocab_state_round_trip() -> None:
    vocab = Vocab.fit([["x", "y", "y"]])
    state = vocab.state_dict()
    assert state == {"symbols": ["y", "x"], "pad": PAD, "unk": UNK}
    again = Vocab.from_state(json.loads(json.dumps(state)))
    assert again == vocab
    assert again.itos == vocab.itos
    assert again.stoi == vocab.stoi
    assert Vocab.fit([["x", "y"]]) != vocab
    bare = Vocab.fit([["x"]], pad=None, unk=None)
    assert Vocab.from_state(bare.state_dict()) == bare
    assert bare != Vocab.fit([["x"]])


def test_vocab_without_unk_raises_key_error() -> None:
    vocab = Vocab.fit([["B-PER", "O", "O"]], pad=None, unk=None)
    assert vocab.itos == ["O", "B-PER"]
    assert vocab.encode(["B-PER", "O"]) == [1, 0]
    with pytest.raises(KeyError):
        vocab.index("I-PER")
    with pytest.raises(KeyError):
        vocab.encode(["O", "I-PER"])


def test_vocab_duplicate_symbols_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Vocab(["a", "b", "a"])
    # specials among the symbols are not duplicated
    assert Vocab([UNK, "a"]).itos == [PAD, UNK, "a"]


def test_normalize_word() -> None:
    assert normalize_word("Año2024") == "Año2024"
    assert normalize_word("Año2024", lowercase=True) == "año2024"
    assert normalize_word("Año2024", zero_digits=True) == "Año0000"
    assert normalize_word("Año2024", lowercase=True, zero_digits=True) == "año0000"
    assert normalize_word("3,14", zero_digits=True) == "0,00"


# --- TaggingCodec ---------------------------------------------------------------------------

RECORDS = [
    {
        "tokens": ["Juan", "Pérez", "vive", "en", "Madrid"],
        "tags": ["B-PER", "I-PER", "O", "O", "B-LOC"],
    },
    {
        "tokens": ["En", "1999", "Ana", "vio", "Nueva", "York", "York"],
        "tags": ["O", "O", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC"],
    },
    {"tokens": ["en", "en"], "tags": ["O", "O"]},
]


@pytest.mark.parametrize("scheme", ["bioes", "iob2"])
def test_tagging_vocab_fit_and_round_trip(scheme: str) -> None:
    vocab = TaggingCodec.fit(RECORDS, tag_scheme=scheme)
    # words: zero_digits by default; "en" is the most frequent word
    assert vocab.words.itos[:3] == [PAD, UNK, "en"]
    assert "0000" in vocab.words
    assert "1999" not in vocab.words
    assert vocab.chars.pad_id == 0
    # tags: no padding or unknown symbol; O is the most frequent
    assert vocab.tags.pad is None
    assert vocab.tags.unk is None
    assert vocab.tags.itos[0] == "O"
    expected_tags = (
        {"O", "B-PER", "E-PER", "S-PER", "S-LOC", "B-LOC", "I-LOC", "E-LOC"}
        if scheme == "bioes"
        else {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
    )
    assert set(vocab.tags.itos) == expected_tags

    state = vocab.state_dict()
    again = TaggingCodec.from_state(json.loads(json.dumps(state)))
    assert again == vocab
    assert again.state_dict() == state
    for record in RECORDS:
        assert again.encode_tokens(record["tokens"]) == vocab.encode_tokens(record["tokens"])
        assert again.encode_tags(record["tags"]) == vocab.encode_tags(record["tags"])
        ids = vocab.encode_tags(record["tags"])
        assert vocab.decode_tags(ids) == record["tags"]
        assert vocab.tags.decode(ids) == vocab.schemed(record["tags"])
    other = "iob2" if scheme == "bioes" else "bioes"
    assert TaggingCodec.fit(RECORDS, tag_scheme=other) != vocab


def test_tagging_vocab_encodings() -> None:
    vocab = TaggingCodec.fit(RECORDS, tag_scheme="bioes", max_word_chars=3)
    words, chars = vocab.encode_tokens(["Juan", "2024", "Zzz"])
    assert words[0] == vocab.words.index("Juan")
    assert words[1] == vocab.words.index("0000")  # normalised like training
    assert words[2] == vocab.words.unk_id
    assert chars[0] == vocab.chars.encode("Jua")  # cut at max_word_chars
    assert chars[1] == vocab.chars.encode("202")  # characters see the original digits
    assert [len(c) for c in chars] == [3, 3, 3]
    assert vocab.schemed(["B-PER", "I-PER", "O", "B-LOC"]) == ["B-PER", "E-PER", "O", "S-LOC"]
    with pytest.raises(KeyError):
        vocab.encode_tags(["B-ORG"])  # a tag never seen in training
