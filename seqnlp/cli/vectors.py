"""``seqnlp vectors``: train word vectors on raw text with gensim (word2vec or fastText).

The text is split into tokens as the models split raw text (``seqnlp.text.Pretokenizer``:
spaCy's rule-based tokenizer for the language, or white space), one line (a paragraph)
at a time, so that the vectors' words are the tokens a tagger trained on CoNLL data
looks up. The corpus is streamed: tokenized once into a temporary file that gensim
reads for every epoch (its ``corpus_file`` mode), never held in memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("seqnlp")


def _gensim() -> Any:
    try:
        import gensim.models
    except ImportError:
        raise ValueError(
            "seqnlp vectors trains with gensim, which is not installed: "
            "pip install 'seqnlp[vectors]' (or pip install gensim)"
        ) from None
    return gensim.models


def raw_lines(path: str, max_lines: int | None = None, encoding: str = "utf-8") -> Iterator[str]:
    """The non-empty lines of ``path`` (plain, gzip, xz or bzip2), stripped; the first
    ``max_lines`` only when given."""
    from seqnlp.data.vectors import open_binary

    kept = 0
    with open_binary(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode(encoding).strip()
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not {encoding} text ({err.reason})") from None
            if not text:
                continue
            if max_lines is not None and kept >= max_lines:
                return
            kept += 1
            yield text


_WORKER: dict[str, Any] = {}


def _start_tokenizer(tokenizer: str, language: str, lowercase: bool, zero_digits: bool) -> None:
    """Build this process's pretokenizer (each worker builds its own spaCy)."""
    from seqnlp.text import Pretokenizer

    _WORKER.update(pretokenizer=Pretokenizer(tokenizer, language),  # type: ignore[arg-type]
                   lowercase=lowercase, zero_digits=zero_digits)  # fmt: skip


def _tokenize(lines: list[str]) -> list[str]:
    """Each line's tokens, split by the pretokenizer, normalised as asked (lowercase;
    digits to 0, as the tagger's ``zero_digits``), joined by spaces."""
    from seqnlp.tokenization import normalize_word

    spans = _WORKER["pretokenizer"].spans
    lowercase, zero_digits = _WORKER["lowercase"], _WORKER["zero_digits"]
    return [
        " ".join(normalize_word(text[s:e], lowercase, zero_digits) for s, e in spans(text))
        for text in lines
    ]


def _chunks(lines: Iterator[str], size: int = 256) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tokenize_corpus(args: argparse.Namespace, output: Path) -> tuple[int, int]:
    """Write the tokenized lines of ``args.input`` to ``output``, in order, with
    ``args.jobs`` processes; returns the lines and tokens written."""
    import multiprocessing

    options = (args.tokenizer, args.language, args.lowercase, args.zero_digits)
    chunks = _chunks(raw_lines(args.input, args.max_lines, args.encoding))
    lines = tokens = 0
    with open(output, "w", encoding="utf-8") as out:
        if args.jobs > 1:
            # The platform's default start (fork on Linux, as torch's DataLoader workers).
            pool = multiprocessing.get_context().Pool(args.jobs, _start_tokenizer, options)
            with pool:
                done = pool.imap(_tokenize, chunks, chunksize=4)
                for tokenized in done:
                    lines, tokens = _write_lines(out, tokenized, lines, tokens)
        else:
            _start_tokenizer(*options)
            for chunk in chunks:
                lines, tokens = _write_lines(out, _tokenize(chunk), lines, tokens)
    return lines, tokens


def _write_lines(out: Any, tokenized: list[str], lines: int, tokens: int) -> tuple[int, int]:
    for line in tokenized:
        if line:
            out.write(line + "\n")
            lines += 1
            tokens += line.count(" ") + 1
    return lines, tokens


def run_vectors(argv: Sequence[str]) -> None:
    description = (
        "Train word vectors on raw text (one paragraph or sentence a line) with gensim's "
        "word2vec or fastText, tokenized as seqnlp's models tokenize raw text; write them "
        "for --data.vectors."
    )
    p = argparse.ArgumentParser(prog="seqnlp vectors", description=description)
    p.add_argument("--input", required=True, help="raw text, plain or .gz / .xz / .bz2")
    p.add_argument("--output", required=True,
                   help="the vectors: word2vec text (.vec, .txt) or binary (.bin)")  # fmt: skip
    p.add_argument(
        "--method", choices=["word2vec", "fasttext"], default="word2vec",
        help="fasttext also learns character n-grams (the words' vectors are written)",
    )  # fmt: skip
    p.add_argument(
        "--model_output", default=None,
        help="fasttext only: also write the whole model (subword n-grams included) as "
        "fastText's own .bin, which data.vectors reads to give every word a vector",
    )  # fmt: skip
    p.add_argument("--buckets", type=int, default=2_000_000,
                   help="fasttext: hash buckets of the character n-grams (fastText's -bucket; "
                   "the .bin holds buckets x dim numbers)")  # fmt: skip
    p.add_argument("--architecture", choices=["skipgram", "cbow"], default="skipgram")
    p.add_argument("--dim", type=int, default=100, help="vector size (the model's word_dim)")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min_count", type=int, default=5, help="ignore rarer words")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tokenizer", choices=["spacy", "whitespace"], default="spacy",
                   help="as the models' data.pretokenizer (default spacy)")  # fmt: skip
    p.add_argument("--language", default="xx", help="spaCy language code, e.g. es, nl (xx)")
    p.add_argument("--lowercase", action="store_true", help="lowercase every token")
    p.add_argument("--zero_digits", action="store_true",
                   help="map digits to 0, as the tagger's data.zero_digits does")  # fmt: skip
    p.add_argument("--max_lines", type=int, default=None, help="read only the first N lines")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes that tokenize (default: one per core)")  # fmt: skip
    p.add_argument("--encoding", default="utf-8")
    args = p.parse_args(argv)
    models = _gensim()
    if args.model_output and args.method != "fasttext":
        raise ValueError("--model_output writes a fastText model: add --method fasttext")
    if not Path(args.input).is_file():
        raise ValueError(f"--input {args.input}: no such file")
    if min(args.dim, args.epochs, args.min_count, args.jobs, args.workers, args.buckets) < 1:
        raise ValueError("--dim, --epochs, --min_count, --jobs, --workers and --buckets must be "
                         "at least 1")  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqnlp-vectors-") as tmp:
        corpus = Path(tmp) / "tokens.txt"
        lines, tokens = tokenize_corpus(args, corpus)
        tokenized = time.perf_counter() - started
        log.info("tokenized %d lines, %d tokens in %.0f s", lines, tokens, tokenized)
        if tokens == 0:
            raise ValueError(f"--input {args.input}: no text")
        method = models.FastText if args.method == "fasttext" else models.Word2Vec
        subwords = {"bucket": args.buckets} if args.method == "fasttext" else {}
        try:
            model = method(
                corpus_file=str(corpus), vector_size=args.dim, window=args.window,
                min_count=args.min_count, sg=int(args.architecture == "skipgram"),
                workers=args.workers, epochs=args.epochs, seed=args.seed, **subwords,
            )  # fmt: skip
        except RuntimeError as err:  # gensim's "you must first build vocabulary"
            raise ValueError(f"--input {args.input}: no vectors trained (no word occurs "
                             f"--min_count {args.min_count} times?): {err}") from None  # fmt: skip
    wv = model.wv
    _write(args.output, wv.index_to_key, wv.vectors)
    if args.model_output:
        _write_fasttext_model(args.model_output, model)
    print(
        f"{len(wv.index_to_key)} vectors of {args.dim} numbers ({args.method}, "
        f"{args.architecture}) from {tokens} tokens in {lines} lines -> {args.output}"
        f"{' and ' + args.model_output if args.model_output else ''}; "
        f"tokenizing {tokenized:.0f} s, in all {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


def _write(path: str, words: list[str], vectors: Any) -> None:
    from seqnlp.data.vectors import write_vectors
    from seqnlp.outputs import atomic_output

    binary = path.endswith(".bin")
    with atomic_output(path, binary=True) as handle:
        write_vectors(handle, words, vectors, "word2vec_binary" if binary else "word2vec")


def _write_fasttext_model(path: str, model: Any) -> None:
    """The whole fastText model in fastText's own binary format (``.bin``), written to a
    temporary name beside ``path`` and renamed, so that a failure leaves no half file."""
    from gensim.models.fasttext import save_facebook_model

    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        save_facebook_model(model, str(partial))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
