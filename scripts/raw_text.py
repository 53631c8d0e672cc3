"""Raw text made from pre-tokenized corpora, for measuring seqnlp on text as people have it.

- CoNLL-2002 sentences are detokenized with sacremoses' Moses detokenizer; each gold
  token's character span in the result is kept, so that gold entities can be scored by
  characters against what a model finds in the raw text.
- SST-2 sentences (lowercased, PTB-tokenized) get their PTB escapes undone
  (``-lrb-`` -> ``(``, `````` / ``''`` -> ``"``, ``n't`` joined to its word), are
  detokenized the same way, and their first letter is upper-cased.

Used by ``scripts/measure_tokenizers.py`` and ``scripts/raw_text_scores.py``.
Needs sacremoses (``pip install sacremoses``), a measuring tool, not a dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

PTB_ESCAPES = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{",
               "-rcb-": "}", "``": '"', "''": '"'}  # fmt: skip


def detokenize_tokens(tokens: Sequence[str], lang: str) -> tuple[str, list[tuple[int, int]]]:
    """``tokens`` as raw text, and each token's (start, end) in it (end exclusive).

    Raises ValueError when the detokenizer changed a token so that it cannot be found.
    """
    from sacremoses import MosesDetokenizer

    text = MosesDetokenizer(lang).detokenize(list(tokens))
    spans, cursor = [], 0
    for token in tokens:
        start = text.find(token, cursor)
        if start < 0:
            raise ValueError(f"token {token!r} not found in {text!r}")
        spans.append((start, start + len(token)))
        cursor = start + len(token)
    return text, spans


def entity_spans(
    tags: Sequence[str], spans: Sequence[tuple[int, int]]
) -> set[tuple[str, int, int]]:
    """Gold IOB2 entities as (type, start_char, end_char) given each token's span."""
    from seqnlp.data.tagschemes import spans as tag_spans

    return {(kind, spans[start][0], spans[end - 1][1]) for kind, start, end in tag_spans(tags)}


def sst2_raw(text: str) -> str:
    """An SST-2 sentence as raw text: PTB escapes undone, detokenized, capitalised."""
    from sacremoses import MosesDetokenizer

    words: list[str] = []
    for token in text.split():
        token = PTB_ESCAPES.get(token, token)
        if token in ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m") and words:
            words[-1] += token  # "ca n't" -> "can't", "it 's" -> "it's"
        else:
            words.append(token)
    raw = MosesDetokenizer("en").detokenize(words)
    return raw[:1].upper() + raw[1:]
