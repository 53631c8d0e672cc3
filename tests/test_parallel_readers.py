"""Parallel-text readers (files, tsv, jsonl, auto) and the gzip download of named datasets."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from seqnlp.data import sources
from seqnlp.data.catalog import CatalogFile, NamedDataset
from seqnlp.data.parallel_readers import parallel_format, read_parallel
from seqnlp.data.sources import parse_source, resolve_named


def esc(path: str | Path) -> str:
    """``path`` as a regular expression that matches it literally."""
    return re.escape(str(path))


def write_pair(
    tmp_path: Path, src: str, tgt: str, name: str = "train", langs: tuple[str, str] = ("de", "en")
) -> str:
    """Write ``{name}.{de}`` and ``{name}.{en}`` (bytes as given) and return the prefix."""
    prefix = tmp_path / name
    Path(f"{prefix}.{langs[0]}").write_bytes(src.encode("utf-8"))
    Path(f"{prefix}.{langs[1]}").write_bytes(tgt.encode("utf-8"))
    return str(prefix)


# --- files ----------------------------------------------------------------------------------


def test_files_pairs_in_order(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "Ein Hund.\nZwei Katzen.\n", "A dog.\nTwo cats.\n")
    assert read_parallel(prefix, "de", "en", fmt="files") == [
        {"source": "Ein Hund.", "target": "A dog."},
        {"source": "Zwei Katzen.", "target": "Two cats."},
    ]


def test_files_either_direction(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "Ein Hund.\n", "A dog.\n")
    assert read_parallel(prefix, "en", "de") == [{"source": "A dog.", "target": "Ein Hund."}]


def test_files_keep_inner_whitespace_and_crlf(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "Ein  Hund\tläuft.\r\nNoch\u00a0einer\r\n", "A  dog\truns.\nAnd")
    assert read_parallel(prefix, "de", "en") == [
        {"source": "Ein  Hund\tläuft.", "target": "A  dog\truns."},
        {"source": "Noch\u00a0einer", "target": "And"},  # no final newline on the target
    ]


def test_files_different_line_counts(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\nb\nc\n", "x\ny\n")
    with pytest.raises(ValueError, match="line-aligned") as info:
        read_parallel(prefix, "de", "en")
    message = str(info.value)
    assert f"{prefix}.de has 3 lines" in message
    assert f"{prefix}.en has 2" in message


@pytest.mark.parametrize("side", ["de", "en"])
def test_files_one_sided_empty_line(tmp_path: Path, side: str) -> None:
    lines = {"de": "a\nb\nc\n", "en": "x\ny\nz\n"}
    lines[side] = lines[side].replace("b\n" if side == "de" else "y\n", "  \n")
    prefix = write_pair(tmp_path, lines["de"], lines["en"])
    with pytest.raises(ValueError, match=rf"{esc(prefix)}\.{side}:2: expected a sentence"):
        read_parallel(prefix, "de", "en")


def test_files_pair_empty_on_both_sides_is_skipped(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\n\nc\n", "x\r\n \r\nz\r\n")
    assert read_parallel(prefix, "de", "en") == [
        {"source": "a", "target": "x"},
        {"source": "c", "target": "z"},
    ]


@pytest.mark.parametrize("langs", [(None, "en"), ("de", None), (None, None), ("", "en")])
def test_files_need_both_languages(tmp_path: Path, langs: tuple[str | None, str | None]) -> None:
    prefix = write_pair(tmp_path, "a\n", "x\n")
    with pytest.raises(ValueError, match="needs both src_lang and tgt_lang"):
        read_parallel(prefix, langs[0], langs[1], fmt="files")


def test_files_missing_file(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\n", "x\n")
    with pytest.raises(ValueError, match=rf"{esc(prefix)}\.fr: no such file"):
        read_parallel(prefix, "de", "fr", fmt="files")


def test_files_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\nb\n", "x\ny\n")
    Path(f"{prefix}.en").write_bytes(b"x\ncaf\xe9\n")
    with pytest.raises(ValueError, match=rf"{esc(prefix)}\.en:2: cannot decode line as utf-8"):
        read_parallel(prefix, "de", "en")


def test_files_other_encoding(tmp_path: Path) -> None:
    prefix = tmp_path / "train"
    Path(f"{prefix}.de").write_bytes("Café\n".encode("latin-1"))
    Path(f"{prefix}.en").write_bytes(b"Coffee\n")
    assert read_parallel(str(prefix), "de", "en", encoding="latin-1") == [
        {"source": "Café", "target": "Coffee"}
    ]


# --- tsv ------------------------------------------------------------------------------------


def test_tsv_pairs(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes(b'Ein "Hund".\tA "dog".\n\n  \nZwei  Katzen.\tTwo cats.\r\n')
    assert read_parallel(str(path)) == [
        {"source": 'Ein "Hund".', "target": 'A "dog".'},  # no quoting: quotes are text
        {"source": "Zwei  Katzen.", "target": "Two cats."},
    ]


@pytest.mark.parametrize(("line", "found"), [("only one column", 1), ("a\tb\tc", 3)])
def test_tsv_wrong_column_count(tmp_path: Path, line: str, found: int) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(f"a\tb\n{line}\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=rf"{esc(path)}:2: expected 2 tab-separated columns \(source, target\), found {found}",
    ):
        read_parallel(str(path))


def test_tsv_empty_side(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("a\tb\n \tb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{esc(path)}:2: .*the source is empty"):
        read_parallel(str(path))


def test_tsv_explicit_format_any_name(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("a\tb\n", encoding="utf-8")
    assert read_parallel(str(path), fmt="tsv") == [{"source": "a", "target": "b"}]


def test_tsv_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothere.tsv"
    with pytest.raises(ValueError, match=rf"{esc(path)}: no such file"):
        read_parallel(str(path))


def test_tsv_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes(b"a\tb\n\n\xff\tx\n")
    with pytest.raises(ValueError, match=rf"{esc(path)}:3: cannot decode line as utf-8"):
        read_parallel(str(path))


# --- jsonl ----------------------------------------------------------------------------------


def write_jsonl(path: Path, objects: list[object]) -> str:
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n", encoding="utf-8")
    return str(path)


def test_jsonl_pairs(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [{"source": "Ein Hund.", "target": "A dog.", "id": 1}, {"source": "b", "target": "y"}],
    )
    assert read_parallel(path) == [
        {"source": "Ein Hund.", "target": "A dog."},
        {"source": "b", "target": "y"},
    ]


def test_jsonl_custom_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"de": "Ein Hund.", "en": "A dog."}])
    assert read_parallel(path, source_field="en", target_field="de") == [
        {"source": "A dog.", "target": "Ein Hund."}
    ]


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"source": "a"}, "expected 'target' to be a non-empty string, found no such field"),
        ({"source": "a", "target": ""}, "expected 'target' to be a non-empty string"),
        ({"source": 3, "target": "x"}, "expected 'source' to be a non-empty string, found 3"),
        (["a", "x"], "expected an object with 'source' and 'target'"),
    ],
)
def test_jsonl_errors(tmp_path: Path, obj: object, match: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"source": "ok", "target": "ok"}, obj])
    with pytest.raises(ValueError, match=rf"{esc(path)}:2: {match}"):
        read_parallel(path)


def test_jsonl_not_json(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"source": "a", "target": "b"}\n{"source": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{esc(path)}:2: expected a JSON object"):
        read_parallel(str(path))


def test_jsonl_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"source": "a", "target": "b"}\n{"source": "\xe9", "target": "b"}\n')
    with pytest.raises(ValueError, match=rf"{esc(path)}:2: cannot decode line as utf-8"):
        read_parallel(str(path))


# --- auto -----------------------------------------------------------------------------------


def test_auto_files(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\n", "x\n")
    assert parallel_format(prefix, "de", "en") == "files"
    assert read_parallel(prefix, "de", "en") == [{"source": "a", "target": "x"}]


def test_auto_files_win_over_suffix(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\n", "x\n", name="corpus.tsv")
    assert parallel_format(prefix, "de", "en") == "files"


def test_auto_tsv_and_jsonl(tmp_path: Path) -> None:
    tsv = tmp_path / "train.tsv"
    tsv.write_text("a\tx\n", encoding="utf-8")
    jsonl = write_jsonl(tmp_path / "train.jsonl", [{"source": "b", "target": "y"}])
    assert parallel_format(tsv) == "tsv"
    assert parallel_format(jsonl, "de", "en") == "jsonl"  # no train.jsonl.de: by suffix
    assert read_parallel(str(tsv), "de", "en") == [{"source": "a", "target": "x"}]
    assert read_parallel(jsonl) == [{"source": "b", "target": "y"}]


def test_auto_nothing_found_lists_what_was_looked_for(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "a\n", "x\n")
    Path(f"{prefix}.en").unlink()
    with pytest.raises(ValueError, match="cannot tell the parallel-text format") as info:
        read_parallel(prefix, "de", "en")
    message = str(info.value)
    assert f"{prefix}.de (found)" in message
    assert f"{prefix}.en (missing)" in message
    assert ".tsv or .jsonl" in message


def test_auto_without_languages_says_so(tmp_path: Path) -> None:
    prefix = str(tmp_path / "train")
    with pytest.raises(ValueError, match="cannot tell") as info:
        read_parallel(prefix)
    message = str(info.value)
    assert f"{prefix}.SRC and {prefix}.TGT" in message
    assert "src_lang and tgt_lang" in message
    assert ".tsv or .jsonl" in message


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown parallel format 'csv'"):
        read_parallel(str(tmp_path / "x.csv"), fmt="csv")  # type: ignore[arg-type]


# --- empty ----------------------------------------------------------------------------------


def test_empty_files(tmp_path: Path) -> None:
    prefix = write_pair(tmp_path, "\n\n", "\n \n")
    with pytest.raises(ValueError, match="expected at least one sentence pair") as info:
        read_parallel(prefix, "de", "en")
    assert f"{prefix}.de" in str(info.value)


@pytest.mark.parametrize(("name", "content"), [("train.tsv", "\n  \n"), ("train.jsonl", "")])
def test_empty_tsv_jsonl(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{esc(path)}: expected at least one sentence pair"):
        read_parallel(str(path))


# --- gzip download --------------------------------------------------------------------------

GZ_CONTENT = "Ein Hund läuft.\nZwei Katzen.\n".encode()


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $SEQNLP_DATA and an empty home, so that nothing real is found."""
    data, home = tmp_path / "data", tmp_path / "home"
    data.mkdir()
    home.mkdir()
    monkeypatch.setenv("SEQNLP_DATA", str(data))
    monkeypatch.setattr(Path, "home", lambda: home)
    return data


def gz_catalog(
    url: str, sha: str = hashlib.sha256(GZ_CONTENT).hexdigest()
) -> dict[str, NamedDataset]:
    entry = CatalogFile("fakemt/train.de", sha, url, gzip=True)
    return {"fakemt": NamedDataset("fakemt", "translation", "a fake corpus", {"train.de": entry})}


def test_gzip_download(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tmp_path / "remote" / "train.de.gz"
    remote.parent.mkdir()
    remote.write_bytes(gzip.compress(GZ_CONTENT))
    monkeypatch.setattr(sources, "CATALOG", gz_catalog(remote.as_uri()))
    path = resolve_named("fakemt", "train.de")
    assert path == data_root / "fakemt" / "train.de"
    assert path.read_bytes() == GZ_CONTENT  # staged decompressed
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.de"]
    assert resolve_named("fakemt", "train.de", download=False) == path  # verified again


def test_gzip_checksum_is_of_decompressed_bytes(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "train.de.gz"
    payload = gzip.compress(GZ_CONTENT)
    remote.write_bytes(payload)
    sha_of_gz = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(sources, "CATALOG", gz_catalog(remote.as_uri(), sha=sha_of_gz))
    with pytest.raises(ValueError, match="fails its SHA-256 check"):
        resolve_named("fakemt", "train.de")
    assert not (data_root / "fakemt").exists()


@pytest.mark.parametrize(
    "payload",
    [b"plain text, not gzip\n", gzip.compress(GZ_CONTENT)[:-12], b"\x1f\x8b\x08\x00garbage"],
    ids=["not-gzip", "truncated", "corrupt"],
)
def test_corrupt_gzip(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: bytes
) -> None:
    remote = tmp_path / "train.de.gz"
    remote.write_bytes(payload)
    monkeypatch.setattr(sources, "CATALOG", gz_catalog(remote.as_uri()))
    with pytest.raises(ValueError, match="is not a valid gzip file") as info:
        resolve_named("fakemt", "train.de")
    message = str(info.value)
    assert "named dataset fakemt:train.de not found" in message  # the missing message
    assert str(data_root / "fakemt" / "train.de") in message
    assert remote.as_uri() in message
    assert not (data_root / "fakemt").exists()


def test_multi30k_catalog_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dataset = sources.CATALOG["multi30k"]
    assert dataset.task == "translation"
    assert sorted(dataset.splits) == sorted(
        f"{s}.{lang}" for s in ("train", "validation", "test") for lang in ("de", "en")
    )
    entry = dataset.splits["validation.en"]
    assert entry.path == "multi30k/val.en"
    assert entry.gzip
    assert entry.url == (
        "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/val.en.gz"
    )
    assert dataset.splits["test.de"].path == "multi30k/test_2016_flickr.de"
    source = parse_source("multi30k:train")
    assert (source.kind, source.name, source.split) == ("named", "multi30k", "train")


# --- real data ------------------------------------------------------------------------------

_DATA = os.environ.get("SEQNLP_DATA")
_M30K = Path(_DATA).expanduser() / "multi30k" if _DATA else None
realdata = pytest.mark.skipif(
    not (_M30K and (_M30K / "train.de").is_file()),
    reason="real data: set SEQNLP_DATA to the staged corpora (with multi30k/train.de)",
)


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize(
    "split", [f"{s}.{lang}" for s in ("train", "validation", "test") for lang in ("de", "en")]
)
def test_real_multi30k_checksums(split: str) -> None:
    assert resolve_named("multi30k", split, download=False).parent == _M30K


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize(
    ("name", "count"), [("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)]
)
def test_real_multi30k_pair_counts(name: str, count: int) -> None:
    records = read_parallel(str(_M30K / name), "de", "en")
    assert len(records) == count
    assert all(r["source"].strip() and r["target"].strip() for r in records)


@pytest.mark.realdata
@realdata
def test_real_multi30k_direction_swaps() -> None:
    de_en = read_parallel(str(_M30K / "val"), "de", "en")
    en_de = read_parallel(str(_M30K / "val"), "en", "de")
    assert en_de == [{"source": r["target"], "target": r["source"]} for r in de_en]
    assert en_de[0] == {
        "source": "A group of men are loading cotton onto a truck",
        "target": "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",
    }
