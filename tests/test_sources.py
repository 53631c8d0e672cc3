"""Data sources: parsing, named datasets (checksums, download), hub fail-fast."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import pytest

from seqnlp.data import sources
from seqnlp.data.catalog import CATALOG, PACKAGE_SAMPLES, CatalogFile, NamedDataset
from seqnlp.data.sources import (
    Source,
    load_hub,
    parse_source,
    resolve_named,
    sha256sum,
)
from seqnlp.data.tagging_readers import read_tagging_file

SPLITS = ("train", "validation", "test")


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """$SEQNLP_DATA and ~/.cache/seqnlp/data, both empty folders under tmp_path."""
    data = tmp_path / "data"
    home = tmp_path / "home"
    data.mkdir()
    home.mkdir()
    monkeypatch.setenv("SEQNLP_DATA", str(data))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(Path, "home", lambda: home)
    return data, home / ".cache" / "seqnlp" / "data"


# --- parse_source ---------------------------------------------------------------------------


def test_parse_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "train.conll"
    path.write_text("a O\n", encoding="utf-8")
    assert parse_source(str(path)) == Source("file", str(path))
    # a missing path is still a file source (the reader reports it)
    assert parse_source("missing/train.conll").kind == "file"
    # an existing file wins over a named dataset of the same spelling
    (tmp_path / "conll2002_es:train").write_text("a O\n", encoding="utf-8")
    assert parse_source("conll2002_es:train") == Source("file", "conll2002_es:train")


def test_parse_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_source("conll2002_es:train") == Source(
        "named", "conll2002_es:train", name="conll2002_es", split="train"
    )
    source = parse_source("conll2002_nl:validation")
    assert (source.kind, source.name, source.split) == ("named", "conll2002_nl", "validation")
    assert parse_source("sample_ner:test").kind == "named"


def test_parse_unknown_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="'foo:train'") as info:
        parse_source("foo:train")
    message = str(info.value)
    assert "neither an existing file nor a named dataset" in message
    for name in CATALOG:
        assert name in message


def test_parse_hub() -> None:
    assert parse_source("hf:owner/name:train") == Source(
        "hub", "hf:owner/name:train", name="owner/name", split="train", config=None
    )
    assert parse_source("hf:conll2002:es:validation") == Source(
        "hub", "hf:conll2002:es:validation", name="conll2002", split="validation", config="es"
    )


@pytest.mark.parametrize("spec", ["hf:bad", "hf:", "hf:a:b:c:d", "hf:a::train", "hf::train"])
def test_parse_bad_hub(spec: str) -> None:
    with pytest.raises(ValueError, match="expected hf:REPO:SPLIT or hf:REPO:CONFIG:SPLIT"):
        parse_source(spec)


# --- resolve_named: checksums and missing files ---------------------------------------------


def test_wrong_content_fails_checksum(roots: tuple[Path, Path]) -> None:
    data, _ = roots
    path = data / "conll2002" / "esp.train"
    path.parent.mkdir(parents=True)
    path.write_text("Hola O\n", encoding="utf-8")
    with pytest.raises(ValueError, match="SHA-256") as info:
        resolve_named("conll2002_es", "train", download=False)
    message = str(info.value)
    assert str(path) in message
    assert CATALOG["conll2002_es"].splits["train"].sha256 in message
    assert sha256sum(path) in message


def test_cache_folder_is_searched_and_verified(roots: tuple[Path, Path]) -> None:
    _, cache = roots
    path = cache / "conll2002" / "ned.testa"
    path.parent.mkdir(parents=True)
    path.write_text("damaged\n", encoding="utf-8")
    with pytest.raises(ValueError, match="SHA-256") as info:
        resolve_named("conll2002_nl", "validation", download=False)
    assert str(path) in str(info.value)


def test_missing_without_download(roots: tuple[Path, Path]) -> None:
    data, _ = roots
    expected = data / "conll2002" / "esp.testb"
    with pytest.raises(ValueError, match="SEQNLP_DATA") as info:
        resolve_named("conll2002_es", "test", download=False)
    message = str(info.value)
    assert str(expected) in message
    assert "conll2002/esp.testb" in message
    assert not expected.exists()


def test_missing_without_data_env_names_cache(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cache = roots
    monkeypatch.delenv("SEQNLP_DATA")
    with pytest.raises(ValueError, match="SEQNLP_DATA") as info:
        resolve_named("conll2002_nl", "train", download=False)
    assert str(cache / "conll2002" / "ned.train") in str(info.value)


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="no split 'dev'"):
        resolve_named("conll2002_es", "dev", download=False)


# --- download -------------------------------------------------------------------------------

MEMBER = "corpus/fake.train"
CONTENT = b"Juan B-PER\nvive O\n\nHola O\n"


def fake_catalog(
    url: str, sha: str = hashlib.sha256(CONTENT).hexdigest(), member: str | None = MEMBER
) -> dict[str, NamedDataset]:
    """A catalog with one dataset ``fake`` whose train split comes from ``url``."""
    entry = CatalogFile("fake/fake.train", sha, url, member)
    return {"fake": NamedDataset("fake", "tagging", "a fake corpus", {"train": entry})}


@pytest.fixture
def zip_url(tmp_path: Path) -> str:
    archive = tmp_path / "remote" / "fake.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("corpus/README", "not this one")
        zf.writestr(MEMBER, CONTENT)
    return archive.as_uri()


def test_download_then_reuse(
    roots: tuple[Path, Path], zip_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, cache = roots
    monkeypatch.setattr(sources, "CATALOG", fake_catalog(zip_url))
    path = resolve_named("fake", "train")
    assert path == data / "fake" / "fake.train"
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.train"]  # no .part left
    assert not cache.exists()
    assert read_tagging_file(path)[0]["tokens"] == ["Juan", "vive"]

    # second call: the file is there, the URL is not used
    (tmp_path / "remote" / "fake.zip").unlink()
    gone = (tmp_path / "remote" / "nowhere.zip").as_uri()
    monkeypatch.setattr(sources, "CATALOG", fake_catalog(gone))
    assert resolve_named("fake", "train") == path
    assert resolve_named("fake", "train", download=False) == path


def test_download_plain_file(roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = roots
    remote = data.parent / "remote.train"
    remote.write_bytes(CONTENT)
    monkeypatch.setattr(sources, "CATALOG", fake_catalog(remote.as_uri(), member=None))
    assert resolve_named("fake", "train").read_bytes() == CONTENT


def test_download_failure_says_what_to_put_where(
    roots: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = roots
    url = (tmp_path / "remote" / "nowhere.zip").as_uri()
    monkeypatch.setattr(sources, "CATALOG", fake_catalog(url))
    with pytest.raises(ValueError, match=r"Downloading .* failed") as info:
        resolve_named("fake", "train")
    message = str(info.value)
    assert str(data / "fake" / "fake.train") in message  # where
    assert "SEQNLP_DATA" in message
    assert "fake/fake.train" in message  # what
    assert url in message
    assert not (data / "fake").exists()


def test_download_with_wrong_checksum(
    roots: tuple[Path, Path], zip_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "CATALOG", fake_catalog(zip_url, sha="0" * 64))
    with pytest.raises(ValueError, match="SHA-256"):
        resolve_named("fake", "train")


# --- hub ------------------------------------------------------------------------------------


def test_hub_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = parse_source("hf:conll2002:es:train")
    start = time.monotonic()
    with pytest.raises(ValueError, match="Use local files") as info:
        load_hub(source)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "'hf:conll2002:es:train'" in message
    assert "SEQNLP_DATA" in message


def test_hub_datasets_offline_also_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")
    assert sources.hub_reachable() is False


# --- packaged sample ------------------------------------------------------------------------


@pytest.mark.parametrize("use_env", [False, True])
def test_packaged_sample_resolves(
    use_env: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if use_env:
        monkeypatch.setenv("SEQNLP_DATA", str(tmp_path))  # an empty data root is not needed
    else:
        monkeypatch.delenv("SEQNLP_DATA", raising=False)
    for split in SPLITS:
        path = resolve_named("sample_ner", split, download=False)
        assert path == PACKAGE_SAMPLES / "ner" / f"{split}.conll"
        assert sha256sum(path) == CATALOG["sample_ner"].splits[split].sha256
    assert read_tagging_file(resolve_named("sample_ner", "train"))
    assert list(tmp_path.iterdir()) == []


# --- real data ------------------------------------------------------------------------------

_DATA = os.environ.get("SEQNLP_DATA")
realdata = pytest.mark.skipif(
    not (_DATA and (Path(_DATA).expanduser() / "conll2002" / "esp.train").is_file()),
    reason="real data: set SEQNLP_DATA to the staged corpora (with conll2002/esp.train)",
)


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize("split", SPLITS)
def test_real_conll2002_es_checksums(split: str) -> None:
    path = resolve_named("conll2002_es", split, download=False)
    assert path.parent == Path(_DATA or "").expanduser() / "conll2002"


@pytest.mark.realdata
@realdata
def test_real_esp_train_counts() -> None:
    records = read_tagging_file(resolve_named("conll2002_es", "train", download=False))
    assert len(records) == 8323
    assert sum(len(r["tokens"]) for r in records) == 264715


@pytest.mark.realdata
@realdata
def test_real_ned_train_drops_docstart() -> None:
    path = Path(_DATA or "").expanduser() / "conll2002" / "ned.train"
    records = read_tagging_file(path)
    assert len(records) == 15806
    assert all("-DOCSTART-" not in r["tokens"] for r in records)
    assert all(len(r["tokens"]) == len(r["tags"]) for r in records)


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize("name", ["unlabeled_es", "unlabeled_nl"])
def test_real_raw_text_corpora_checksums(name: str) -> None:
    path = resolve_named(name, "train", download=False)
    assert path.parent == Path(_DATA or "").expanduser() / "unlabeled"
