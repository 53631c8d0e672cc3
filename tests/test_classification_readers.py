"""Labelled-text readers (labeltext, tsv, csv, jsonl), on tiny files written to tmp_path."""

from __future__ import annotations

import json
import re
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from seqnlp.data.classification_readers import read_labelled_text, text_format
from seqnlp.data.lines import iter_lines


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def raises_at(
    path: Path, lineno: int | None, *fragments: str
) -> AbstractContextManager[pytest.ExceptionInfo[ValueError]]:
    """``pytest.raises(ValueError)`` whose message starts with ``path:lineno:``.

    The fragments must then appear, in order, somewhere in the message.
    """
    where = f"{path}:{lineno}:" if lineno is not None else f"{path}:"
    pattern = "^" + re.escape(where) + "".join(f"(?s:.*){re.escape(f)}" for f in fragments)
    return pytest.raises(ValueError, match=pattern)


def rec(label: str, text: str) -> dict[str, str]:
    return {"label": label, "text": text}


# --------------------------------------------------------------------- labeltext


def test_labeltext_label_then_text_keeps_inner_spacing(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", "pos   good  movie\nneg\tbad\t\tfilm  \n")
    assert read_labelled_text(path) == [rec("pos", "good  movie"), rec("neg", "bad\t\tfilm")]


def test_labeltext_skips_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", "\n   \npos fine\n\n\t\nneg awful\n\n")
    assert read_labelled_text(path) == [rec("pos", "fine"), rec("neg", "awful")]


def test_labeltext_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", "1 yes\r\n0 no\r\n")
    assert read_labelled_text(path) == [rec("1", "yes"), rec("0", "no")]


def test_labeltext_sst2_style_line(tmp_path: Path) -> None:
    line = (
        "1 a stirring , funny and finally transporting re-imagining of beauty and the "
        "beast and 1930s horror films"
    )
    path = write(
        tmp_path, "train.txt", line + "\n0 apparently reassembled from the cutting-room floor\n"
    )
    records = read_labelled_text(path)
    assert records[0] == rec("1", line[2:])
    assert records[0]["text"].startswith("a stirring , funny ")
    assert records[1] == rec("0", "apparently reassembled from the cutting-room floor")


@pytest.mark.parametrize("bad", ["pos", "pos   ", "  pos"])
def test_labeltext_label_only_line_raises_with_location(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, "data.txt", f"neg fine\n\n{bad}\npos also fine\n")
    with raises_at(path, 3, "expected '<label> <text>'", repr(bad)):
        read_labelled_text(path)


def test_labeltext_explicit_format_ignores_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "pos a\tb\n")
    assert read_labelled_text(path, fmt="labeltext") == [rec("pos", "a\tb")]


# --------------------------------------------------------------------------- tsv


def test_tsv_default_label_first_text_last(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "pos\tgood movie\nneg\tmeta\t  bad film \n")
    assert read_labelled_text(path) == [rec("pos", "good movie"), rec("neg", "bad film")]


def test_tsv_label_last(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "good movie\tpos\nbad film\tneg\n")
    records = read_labelled_text(path, label_column=-1, text_column=0)
    assert records == [rec("pos", "good movie"), rec("neg", "bad film")]


def test_tsv_positive_and_negative_indices_in_a_wide_row(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "id7\tsrc\tthe text\tLBL\tx\n")
    assert read_labelled_text(path, label_column=-2, text_column=2) == [rec("LBL", "the text")]


def test_tsv_columns_by_name_detect_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.tsv",
        "id\tsentence\tlabel\n1\thello there\t1\n2\tgo away\t0\n",
    )
    records = read_labelled_text(path, label_column="label", text_column="sentence")
    assert records == [rec("1", "hello there"), rec("0", "go away")]


def test_tsv_one_column_by_name_other_by_index(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "sentence\tlabel\nhello there\tpos\n")
    # A name for one column is enough to make the first row a header.
    records = read_labelled_text(path, label_column="label", text_column=0)
    assert records == [rec("pos", "hello there")]


def test_tsv_header_names_are_stripped_and_blank_leading_lines_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "\n label \t text \npos\tfine\n")
    records = read_labelled_text(path, label_column="label", text_column="text")
    assert records == [rec("pos", "fine")]


def test_tsv_header_true_with_indices_skips_first_row(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "label\ttext\npos\tgood\nneg\tbad\n")
    assert read_labelled_text(path, header=True) == [rec("pos", "good"), rec("neg", "bad")]
    # Without header, the header row is read as data.
    assert read_labelled_text(path)[0] == rec("label", "text")


def test_tsv_header_only_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "label\ttext\n")
    with raises_at(path, None, "expected at least one labelled example"):
        read_labelled_text(path, header=True)


def test_tsv_quotes_are_plain_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.tsv",
        'pos\t"quoted" start and a "middle" one\n'
        'neg\t"an opening quote that never closes\n'
        "pos\tnext line\n"
        'neg\tends with "\n',
    )
    assert read_labelled_text(path) == [
        rec("pos", '"quoted" start and a "middle" one'),
        rec("neg", '"an opening quote that never closes'),
        rec("pos", "next line"),
        rec("neg", 'ends with "'),
    ]


def test_tsv_quote_at_start_of_label_cell(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", '"pos\ttext one\nneg\ttext two"\n')
    assert read_labelled_text(path) == [rec('"pos', "text one"), rec("neg", 'text two"')]


def test_tsv_too_few_columns_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "pos\tgood\n\nonly one column\n")
    with raises_at(path, 3, "expected at least 2 TSV columns", "found 1"):
        read_labelled_text(path)


def test_tsv_too_few_columns_for_far_index(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "a\tb\tc\n")
    with raises_at(path, 1, "expected at least 4 TSV columns", "label column 3", "found 3"):
        read_labelled_text(path, label_column=3, text_column=0)
    with raises_at(path, 1, "expected at least 5 TSV columns", "text column -5", "found 3"):
        read_labelled_text(path, label_column=0, text_column=-5)


def test_tsv_label_and_text_in_the_same_cell_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "a\tb\tc\td\nx\ty\tz\n")
    # Index 0 and -3 are distinct cells on a 4-column line, the same one on a 3-column line.
    with raises_at(path, 2, "label column 0 and text column -3 are the same cell"):
        read_labelled_text(path, label_column=0, text_column=-3)
    with raises_at(path, 2, "label column a and text column a are the same cell"):
        read_labelled_text(path, label_column="a", text_column="a")


def test_tsv_named_column_missing_from_header(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "sentence\tscore\nhi\t1\n")
    with raises_at(path, 1, "'label'", "['sentence', 'score']"):
        read_labelled_text(path, label_column="label", text_column="sentence")
    with raises_at(path, 1, "'text'", "['sentence', 'score']"):
        read_labelled_text(path, label_column="score", text_column="text")


def test_tsv_names_with_header_false_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "label\ttext\npos\tgood\n")
    with raises_at(path, None, "columns given by name need a header row"):
        read_labelled_text(path, label_column="label", text_column="text", header=False)


@pytest.mark.parametrize("line", ["\tsome text", "pos\t", "  \tsome text", "pos\t   "])
def test_tsv_empty_label_or_text_raises(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, "data.tsv", f"pos\tgood\n{line}\n")
    with raises_at(path, 2, "expected a non-empty label and text"):
        read_labelled_text(path)


def test_tsv_error_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "data.tsv", "\n\npos\tgood\n\n\nneg\t\n")
    with raises_at(path, 6, "non-empty label and text"):
        read_labelled_text(path)


def test_tsv_carriage_return_inside_a_line_is_a_value_error(tmp_path: Path) -> None:
    # A bare CR in mid-line (old Mac line ends) must not leak a csv.Error.
    path = write(tmp_path, "data.tsv", "pos\tgood\nneg\tbad\rfilm\n")
    with raises_at(path, 2, "cannot read TSV line"):
        read_labelled_text(path)


# --------------------------------------------------------------------------- csv


def test_csv_quoted_cells_with_commas(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.csv",
        'pos,"good, really good"\nneg,"bad, ""very"" bad"\nneg,plain\n',
    )
    assert read_labelled_text(path) == [
        rec("pos", "good, really good"),
        rec("neg", 'bad, "very" bad'),
        rec("neg", "plain"),
    ]


def test_csv_label_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", 'text,label\n"hi, there",pos\nbye,neg\n')
    records = read_labelled_text(path, label_column="label", text_column="text")
    assert records == [rec("pos", "hi, there"), rec("neg", "bye")]


def test_csv_header_true_by_index(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "label,text\npos,fine\n")
    assert read_labelled_text(path, header=True) == [rec("pos", "fine")]


def test_csv_too_few_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", 'pos,fine\n"neg, but one cell"\n')
    with raises_at(path, 2, "expected at least 2 CSV columns", "found 1"):
        read_labelled_text(path)


def test_csv_quoted_cell_spanning_lines_keeps_the_line_break(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", 'pos,"first line\nsecond line"\nneg,x\n')
    assert read_labelled_text(path) == [rec("pos", "first line\nsecond line"), rec("neg", "x")]


def test_csv_carriage_return_inside_unquoted_cell_is_a_value_error(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "pos,a\rb\n")
    with raises_at(path, 1, "cannot read CSV line"):
        read_labelled_text(path)


# ------------------------------------------------------------------------- jsonl


def test_jsonl_default_fields(tmp_path: Path) -> None:
    lines = [{"text": "good", "label": "pos", "extra": 1}, {"label": "neg", "text": " bad "}]
    path = write(tmp_path, "data.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert read_labelled_text(path) == [rec("pos", "good"), rec("neg", " bad ")]


def test_jsonl_custom_field_names(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"sentence": "hi", "y": "pos", "label": "no"}\n')
    records = read_labelled_text(path, label_column="y", text_column="sentence")
    assert records == [rec("pos", "hi")]


def test_jsonl_integer_index_columns_mean_default_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "hi", "label": "pos"}\n')
    assert read_labelled_text(path, label_column=0, text_column=-1) == [rec("pos", "hi")]


def test_jsonl_integer_labels_become_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": -3}\n')
    records = read_labelled_text(path)
    assert records == [rec("1", "a"), rec("-3", "b")]
    assert all(type(r["label"]) is str for r in records)


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a", "label": "x"}\n{"text": "b",\n')
    with raises_at(path, 2, "expected a JSON object"):
        read_labelled_text(path)


@pytest.mark.parametrize(
    "line",
    ['{"label": "pos"}', '{"text": "hi"}', '["hi", "pos"]', '"hi"', "3", "null"],
)
def test_jsonl_missing_field_or_not_an_object(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a", "label": "x"}\n' + line + "\n")
    with raises_at(path, 2, "expected an object with 'text' and 'label'"):
        read_labelled_text(path)


def test_jsonl_missing_custom_field_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a", "label": "x"}\n')
    with raises_at(path, 1, "'sentence'", "'y'"):
        read_labelled_text(path, label_column="y", text_column="sentence")


@pytest.mark.parametrize("text", ['""', '"   "', "3", "null", '["a"]'])
def test_jsonl_empty_or_non_string_text(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "data.jsonl", f'{{"text": {text}, "label": "pos"}}\n')
    with raises_at(path, 1, "expected 'text' to be non-empty text"):
        read_labelled_text(path)


@pytest.mark.parametrize(
    "label", ['["pos"]', "true", "false", "1.5", "null", '{"a": 1}', '""', '"  "']
)
def test_jsonl_bad_label_type(tmp_path: Path, label: str) -> None:
    path = write(
        tmp_path,
        "data.jsonl",
        f'{{"text": "ok", "label": "pos"}}\n{{"text": "hi", "label": {label}}}\n',
    )
    with raises_at(path, 2, "expected 'label' to be a non-empty string or integer"):
        read_labelled_text(path)


def test_jsonl_deeply_nested_line_is_a_value_error(tmp_path: Path) -> None:
    # json.loads raises RecursionError (not a ValueError) on very deep nesting.
    path = write(tmp_path, "data.jsonl", "[" * 100_000 + "\n")
    with raises_at(path, 1, "expected a JSON object"):
        read_labelled_text(path)


def test_jsonl_json_extension_is_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "data.json", '{"text": "a", "label": "x"}\n')
    assert read_labelled_text(path) == [rec("x", "a")]


# ------------------------------------------------------------- format and files


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.tsv", "tsv"),
        ("a.TSV", "tsv"),
        ("a.csv", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.json", "jsonl"),
        ("a.txt", "labeltext"),
        ("a", "labeltext"),
        ("a.tsv.txt", "labeltext"),
    ],
)
def test_text_format_by_extension(name: str, expected: str) -> None:
    assert text_format(name) == expected
    assert text_format(name, "csv") == "csv"


def test_auto_format_reads_each_extension(tmp_path: Path) -> None:
    want = [rec("pos", "a b")]
    assert read_labelled_text(write(tmp_path, "d.tsv", "pos\ta b\n")) == want
    assert read_labelled_text(write(tmp_path, "d.csv", "pos,a b\n")) == want
    assert (
        read_labelled_text(write(tmp_path, "d.jsonl", '{"label": "pos", "text": "a b"}\n')) == want
    )
    assert read_labelled_text(write(tmp_path, "d.txt", "pos a b\n")) == want
    assert read_labelled_text(write(tmp_path, "d.data", "pos a b\n")) == want
    # The same "label<TAB>text" line read as labeltext splits at the first whitespace.
    assert read_labelled_text(write(tmp_path, "e.txt", "pos\ta,b\n")) == [rec("pos", "a,b")]


def test_unknown_explicit_format_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "d.txt", "pos fine\n")
    with pytest.raises(ValueError, match="unknown labelled-text format 'xml'"):
        read_labelled_text(path, fmt="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["e.txt", "e.tsv", "e.csv", "e.jsonl"])
@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_raises(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path, name, content)
    with raises_at(path, None, "expected at least one labelled example, found none"):
        read_labelled_text(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nope.tsv"
    with raises_at(path, None, "no such file"):
        read_labelled_text(path)
    with raises_at(tmp_path, None, "no such file"):  # a directory is no file either
        read_labelled_text(tmp_path)


@pytest.mark.parametrize("name", ["bad.txt", "bad.tsv", "bad.csv", "bad.jsonl"])
def test_non_utf8_byte_names_file_and_line(tmp_path: Path, name: str) -> None:
    good = {"jsonl": b'{"label": "pos", "text": "ok"}\n', "csv": b"pos,ok\n"}.get(
        name.rsplit(".", 1)[1], b"pos\tok\n"
    )
    path = tmp_path / name
    path.write_bytes(good + b"\n" + b"neg\tcaf\xe9\n")
    with raises_at(path, 3, "cannot decode line as utf-8"):
        read_labelled_text(path)


def test_explicit_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("pos café crème\n".encode("latin-1"))
    assert read_labelled_text(path, encoding="latin-1") == [rec("pos", "café crème")]


def test_iter_lines_numbers_and_strips_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"a\r\n\nb\rc\nd")
    assert list(iter_lines(path)) == [(1, "a"), (2, ""), (3, "b\rc"), (4, "d")]
    path.write_bytes(b"ok\n\xff\n")
    lines = iter_lines(path)
    assert next(lines) == (1, "ok")
    with raises_at(path, 2, "cannot decode line as utf-8", "at byte 0"):
        next(lines)


# ---------------------------------------------------------------------- property


def test_random_bytes_give_records_or_value_error() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    alphabet = [*b'\t\n\r ,"{}[]:0123456789abc\\', 0x00, 0x85, 0xC3, 0xA9, 0xE2, 0xFF]
    chunks = st.one_of(
        st.binary(max_size=60),
        st.lists(st.sampled_from(alphabet), max_size=60).map(bytes),
        st.lists(
            st.sampled_from(
                [
                    b'{"label": ',
                    b'"text": ',
                    b"1",
                    b"true",
                    b'"x"',
                    b'""',
                    b", ",
                    b"}",
                    b"\n",
                    b"\t",
                ]
            ),
            max_size=12,
        ).map(b"".join),
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        @hypothesis.settings(max_examples=200, deadline=None, database=None)
        @hypothesis.given(data=chunks, suffix=st.sampled_from([".txt", ".tsv", ".jsonl", ".csv"]))
        def check(data: bytes, suffix: str) -> None:
            path = root / f"random{suffix}"
            path.write_bytes(data)
            try:
                records = read_labelled_text(path)
            except ValueError as err:
                assert str(err).startswith(str(path))
                return
            assert isinstance(records, list) and records
            for record in records:
                assert set(record) == {"label", "text"}
                assert isinstance(record["label"], str)
                assert isinstance(record["text"], str) and record["text"].strip()

        check()
