"""Where data comes from: local files, named datasets, or the Hugging Face Hub.

A data source is written as one string in a recipe:

- ``path/to/file``: a local file;
- ``conll2002_es:train``: split ``train`` of a named dataset of the catalog
  (``seqnlp.data.catalog``),
  resolved under ``$SEQNLP_DATA`` (same layout as the staged corpora), checked
  against its SHA-256 and, when missing, downloaded from the corpus's public
  location into ``$SEQNLP_DATA`` (or ``~/.cache/seqnlp/data``);
- ``hf:REPO[:CONFIG]:SPLIT``: a Hugging Face Hub dataset, for users who are
  online. Offline, it fails within seconds and says how to use local files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import socket
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqnlp.data.catalog import CATALOG, PACKAGE_SAMPLES, CatalogFile

DATA_ENV = "SEQNLP_DATA"
HUB_HOST = "huggingface.co"
_NAMED = re.compile(r"^([A-Za-z][\w.-]*):(train|validation|test)$")


@dataclass(frozen=True)
class Source:
    """A parsed data source string."""

    kind: str  # "file" | "named" | "hub"
    spec: str
    name: str = ""
    split: str = ""
    config: str | None = None


def parse_source(spec: str) -> Source:
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"hub source {spec!r}: expected hf:REPO:SPLIT or hf:REPO:CONFIG:SPLIT")
        config = parts[1] if len(parts) == 3 else None
        return Source("hub", spec, name=parts[0], split=parts[-1], config=config)
    match = _NAMED.match(spec)
    if match and not Path(spec).exists():
        name, split = match.groups()
        if name not in CATALOG:
            raise ValueError(
                f"data source {spec!r} is neither an existing file nor a named dataset; "
                f"named datasets: {', '.join(sorted(CATALOG))}"
            )
        return Source("named", spec, name=name, split=split)
    return Source("file", spec)


def labelled_file(spec: str) -> str:
    """The file that a one-file labelled source names, for evaluation: a path as given,
    or a named dataset's split (verified, downloaded when missing). Hub sources are
    refused: save the split to a file first."""
    source = parse_source(spec)
    if source.kind == "hub":
        raise ValueError(f"{spec}: evaluation reads files and named datasets; save the hub "
                         f"split to a file first")  # fmt: skip
    if source.kind == "named":
        return str(resolve_named(source.name, source.split))
    return source.spec


def data_root() -> Path | None:
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def sha256sum(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksummed(path: str) -> tuple[str, str]:
    """``path`` and its file's SHA-256 (what caches of a file's records are keyed by)."""
    try:
        return path, sha256sum(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read data file ({err.strerror})") from None


def resolve_named(name: str, split: str, download: bool = True) -> Path:
    """Local path of a named dataset's split, verified against its SHA-256."""
    entry = CATALOG[name].splits.get(split)
    if entry is None:
        raise ValueError(f"named dataset {name!r} has no split {split!r}")
    if entry.packaged:
        path = PACKAGE_SAMPLES / entry.path
        _verify(path, entry)
        return path
    roots = [r for r in (data_root(), Path.home() / ".cache" / "seqnlp" / "data") if r]
    for root in roots:
        path = root / entry.path
        if path.is_file():
            _verify(path, entry)
            return path
    where = roots[0] / entry.path
    if not download or not entry.url:  # some are not to be downloaded (raw text)
        raise ValueError(_missing_message(name, split, where))
    _download(entry, where, _missing_message(name, split, where))
    _verify(where, entry)
    return where


def _verify(path: Path, entry: CatalogFile) -> None:
    actual = sha256sum(path)
    if actual != entry.sha256:
        raise ValueError(
            f"{path}: SHA-256 {actual} does not match the catalog's {entry.sha256}; "
            f"the file is damaged or a different version: replace it with the original"
            + (f" from {entry.url}" if entry.url else "")
        )


def _missing_message(name: str, split: str, where: Path) -> str:
    return (
        f"named dataset {name}:{split} not found at {where}. Set ${DATA_ENV} to the folder "
        f"that holds {CATALOG[name].splits[split].path} (e.g. SEQNLP_DATA=../shared/data), "
        f"or train on your own files by giving their paths in the recipe"
    )


def _download(entry: CatalogFile, dest: Path, missing: str, timeout: float = 10.0) -> None:
    """Fetch ``entry`` into ``dest``; the file appears only once complete.

    A zip member is extracted, a gzip payload decompressed, before the SHA-256 check:
    the catalog's checksums are of the files as staged under the data root.
    """
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response:
            payload = response.read()
    except OSError as err:
        raise ValueError(f"{missing}. Downloading {entry.url} failed: {err}") from None
    if entry.zip_member is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                payload = archive.read(entry.zip_member)
        except (zipfile.BadZipFile, KeyError) as err:
            raise ValueError(f"{missing}. {entry.url} is not the expected archive: {err}") from None
    if entry.gzip:
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise ValueError(f"{missing}. {entry.url} is not a valid gzip file: {err}") from None
    if hashlib.sha256(payload).hexdigest() != entry.sha256:
        raise ValueError(f"{missing}. The file downloaded from {entry.url} fails its SHA-256 check")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(payload)
    tmp.replace(dest)


def hub_reachable(timeout: float = 3.0) -> bool:
    """False at once when offline mode is set, else whether the hub answers a TCP connect."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub(source: Source) -> Any:
    """Load a hub dataset split, failing fast with advice when the hub is out of reach."""
    if not hub_reachable():
        raise ValueError(
            f"cannot reach the Hugging Face Hub to load {source.spec!r} (offline or "
            f"HF_HUB_OFFLINE set). Use local files instead: give file paths as the data "
            f"sources (e.g. --data.train train.conll), or a named dataset under ${DATA_ENV}"
        )
    import datasets

    return datasets.load_dataset(source.name, source.config, split=source.split)
