"""Raw text to the tokens a model was trained on, with each token's character offsets.

Training corpora are mostly pre-tokenized (CoNLL, SST-2) and often normalised
(SST-2 is lowercased, its brackets are ``-lrb-``, its quotes ``````/``''`` and its
clitics split, ``does n't``). Text as people have it is neither. A model therefore
carries ``RawText``: a ``Pretokenizer`` that splits raw text into tokens and
sentences with their offsets, and a ``TextNormalizer`` whose settings are learned
from the training tokens and applied to raw input the same way. Both serialise to
plain data in the codec, so prediction needs nothing else.

The pretokenizer is spaCy's rule-based tokenizer for the language (``spacy.blank``:
no model download), chosen by measurement (``scripts/measure_tokenizers.py``,
docs/results.md): on CoNLL-2002 test sentences made raw it recovers 99.5% (es) and
99.9% (nl) of the gold tokens and puts every gold entity on token boundaries; it
gives offsets natively, and its sentencizer splits documents.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, Literal

Span = tuple[int, int]
PretokenizerKind = Literal["spacy", "whitespace"]

_WORD_HYPHEN_WORD = re.compile(r"\w-\w")
_DIGIT = re.compile(r"\d")
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-",
                 "}": "-rcb-"}  # fmt: skip
_DOUBLE_QUOTES = '"“”„«»'
_SINGLE_QUOTES = "‘’‚`"
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")


class Tokenized(str):
    """Text whose tokens are separated by white space already (a pre-tokenized corpus's
    line): predictors take it as tokens instead of running the pretokenizer."""

    __slots__ = ()


class Pretokenizer:
    """Raw text -> token spans and sentence spans (character offsets, end exclusive).

    Args:
        kind: ``spacy`` (spaCy's rule-based tokenizer for ``language``, no model
            download) or ``whitespace`` (split on white space, as seqnlp 0.1 did).
        language: a spaCy language code (``es``, ``nl``, ``en``, ...; ``xx`` for
            many languages at once).
    """

    def __init__(self, kind: PretokenizerKind = "whitespace", language: str = "xx") -> None:
        if kind not in ("spacy", "whitespace"):
            raise ValueError(f"pretokenizer must be spacy or whitespace, not {kind!r}")
        self.kind = kind
        self.language = language
        if kind == "spacy":
            self._nlp  # noqa: B018 (fails now, in one line, for a language spaCy lacks)

    @cached_property
    def _nlp(self) -> Any:
        try:
            import spacy
        except ImportError:
            raise ValueError("the spacy pretokenizer needs spaCy: pip install spacy") from None
        try:
            nlp = spacy.blank(self.language)
        except (ImportError, KeyError, ValueError) as err:
            raise ValueError(f"spaCy has no language {self.language!r} ({err})".split("\n")[0]
                             ) from None  # fmt: skip
        nlp.add_pipe("sentencizer")
        return nlp

    def spans(self, text: str) -> list[Span]:
        """Each token's (start, end) in ``text``, in order; white space is never a token."""
        if self.kind == "whitespace":
            return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        return _token_spans(self._nlp.tokenizer(text))

    def sentences(self, text: str) -> list[list[Span]]:
        """The token spans of each sentence of ``text`` (spaCy's rule-based sentencizer;
        for ``whitespace``, lines)."""
        if self.kind == "whitespace":
            out, offset = [], 0
            for line in text.split("\n"):
                found = [(s + offset, e + offset) for s, e in Pretokenizer().spans(line)]
                if found:
                    out.append(found)
                offset += len(line) + 1
            return out
        doc = self._nlp(text)
        return [found for sent in doc.sents if (found := _token_spans(sent))]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "language": self.language}

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles build spaCy's anew
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Pretokenizer:
        return cls(state["kind"], state["language"])


def _token_spans(tokens: Any) -> list[Span]:
    """The (start, end) of each spaCy token (a ``Doc`` or ``Span``) that is not all
    white space (``is_space``: ``str.isspace``, read from its lexeme)."""
    return [(t.idx, t.idx + len(t)) for t in tokens if not t.is_space]


class TextNormalizer:
    """What a training corpus's tokens imply about its text, applied to raw tokens.

    Learned by ``fit`` from the training tokens:
        lowercase: every letter is lowercase (SST-2).
        ptb_brackets: brackets are written ``-lrb-`` / ``-LRB-`` (PTB); raw ``(`` etc.
            become that, in the corpus's case.
        ptb_quotes: double quotes are ````` and ``''`` (PTB); raw ``"“”`` become the
            opening or closing one.
        straight_quotes: quotes are straight; raw curly quotes become ``"`` and ``'``.
        curly_quotes: double quotes are curly and never straight; a raw ``"`` becomes
            ``“`` or ``”`` (opening or closing).
        zero_digits: every digit is ``0`` (numbers masked); raw digits become ``0``.
        split_clitics: ``n't``, ``'s`` and the like are tokens of their own (PTB);
            raw ``doesn't`` becomes ``does`` + ``n't``.
        join_hyphens: hyphenated words are single tokens; a tokenizer's ``a - b``
            written without spaces becomes ``a-b``.

    Text is always put in Unicode NFC first (as corpora are).
    """

    def __init__(
        self, lowercase: bool = False, ptb_brackets: bool = False, ptb_quotes: bool = False,
        straight_quotes: bool = False, split_clitics: bool = False, join_hyphens: bool = False,
        bracket_case: Literal["lower", "upper"] = "lower", curly_quotes: bool = False,
        zero_digits: bool = False,
    ) -> None:  # fmt: skip
        self.curly_quotes = curly_quotes
        self.zero_digits = zero_digits
        self.lowercase = lowercase
        self.ptb_brackets = ptb_brackets
        self.ptb_quotes = ptb_quotes
        self.straight_quotes = straight_quotes
        self.split_clitics = split_clitics
        self.join_hyphens = join_hyphens
        self.bracket_case = bracket_case

    def __setattr__(self, name: str, value: Any) -> None:
        # every setting change empties the cache of token forms that the settings made
        super().__setattr__(name, value)
        self.__dict__["_forms"] = {}

    @classmethod
    def fit(cls, tokens: Iterable[str]) -> TextNormalizer:
        """The settings a corpus's tokens imply (one pass over them)."""
        letters = upper = digits = nonzero = 0
        seen: set[str] = set()
        curly = hyphenated = straight_double = False
        for token in tokens:
            for char in token:
                if char.isalpha():
                    letters += 1
                    upper += char.isupper()
                elif char.isdigit():
                    digits += 1
                    nonzero += char != "0"
            straight_double = straight_double or '"' in token
            if token in ("-lrb-", "-LRB-", "``", "''", *_CLITICS) or token.lower() == "n't":
                seen.add(token)
            curly = curly or any(c in token for c in "“”‘’„«»")
            hyphenated = hyphenated or bool(_WORD_HYPHEN_WORD.search(token))
        return cls(
            lowercase=letters > 0 and upper == 0,
            ptb_brackets=bool(seen & {"-lrb-", "-LRB-"}),
            ptb_quotes="``" in seen and "''" in seen,
            straight_quotes=not curly,
            split_clitics="n't" in seen or "N'T" in seen,
            join_hyphens=hyphenated,
            bracket_case="upper" if "-LRB-" in seen and "-lrb-" not in seen else "lower",
            curly_quotes=curly and not straight_double and "``" not in seen,
            zero_digits=digits > 0 and nonzero == 0,
        )

    def tokens(self, text: str, spans: list[Span]) -> list[tuple[str, Span]]:
        """Each token of ``text`` in the corpus's form, with its span in ``text``."""
        spans = self._joined(text, spans) if self.join_hyphens else spans
        out: list[tuple[str, Span]] = []
        opened = False
        cache = self._forms
        for start, end in spans:
            raw = text[start:end]
            forms = cache.get(raw)
            if forms is None:
                if len(cache) >= _FORMS_CACHED:
                    cache.clear()
                forms = cache[raw] = self._forms_of(raw)
            for piece, s, e, quote in forms:
                if quote:  # opening or closing: the sentence's quotes so far decide
                    if self.ptb_quotes and piece in _DOUBLE_QUOTES:
                        piece, opened = ("''" if opened else "``"), not opened
                    else:
                        piece, opened = ("”" if opened else "“"), not opened
                out.append((piece, (start + s, start + e)))
        return out

    def _forms_of(self, raw: str) -> tuple[tuple[str, int, int, bool], ...]:
        """The pieces of one raw token, each (form, start, end in ``raw``, whether it
        is a double quote whose form depends on the quotes before it); ``tokens``
        keeps them per raw token, as the same words come again and again."""
        forms = []
        for piece, (s, e) in self._split(unicodedata.normalize("NFC", raw), 0, len(raw)):
            ptb = self.ptb_quotes and piece in _DOUBLE_QUOTES
            quote = ptb or (self.curly_quotes and piece == '"')
            forms.append((piece if quote else self.normalize(piece), s, e, quote))
        return tuple(forms)

    def normalize(self, token: str) -> str:
        """One token's characters in the corpus's form (quotes, brackets, case)."""
        if self.ptb_brackets and token in _PTB_BRACKETS:
            bracket = _PTB_BRACKETS[token]
            return bracket.upper() if self.bracket_case == "upper" else bracket
        if self.straight_quotes:
            token = token.translate(_STRAIGHT)
        if self.zero_digits:
            token = _DIGIT.sub("0", token)
        return token.lower() if self.lowercase else token

    def _split(self, token: str, start: int, end: int) -> list[tuple[str, Span]]:
        if self.split_clitics and len(token) == end - start:
            lower = token.lower().replace("’", "'")
            for clitic in _CLITICS:
                if lower.endswith(clitic) and len(token) > len(clitic):
                    cut = end - len(clitic)
                    head, tail = token[: -len(clitic)], token[-len(clitic) :]
                    return [(head, (start, cut)), (tail, (cut, end))]
        return [(token, (start, end))]

    @staticmethod
    def _joined(text: str, spans: list[Span]) -> list[Span]:
        """``a - b`` written ``a-b`` (no spaces) as one span."""
        out: list[Span] = []
        for start, end in spans:
            if (
                len(out) >= 2
                and text[out[-1][0] : out[-1][1]] == "-"
                and out[-1][0] == out[-2][1]
                and out[-1][1] == start
                and text[start:end][:1].isalnum()
                and text[out[-2][1] - 1 : out[-2][1]].isalnum()
            ):
                out[-2:] = [(out[-2][0], end)]
            else:
                out.append((start, end))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if name != "_forms"}

    def __getstate__(self) -> dict[str, Any]:  # pickles and copies leave the cache out
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TextNormalizer:
        return cls(**state)


#: raw tokens whose forms ``TextNormalizer.tokens`` keeps (emptied when full)
_FORMS_CACHED = 100_000
_STRAIGHT = str.maketrans({c: '"' for c in "“”„«»"} | {c: "'" for c in "‘’‚"})


def whole_tokens(
    sentences: Iterable[Sequence[str]], pretokenizer: Pretokenizer, limit: int = 20_000
) -> list[str]:
    """Training tokens that the pretokenizer would split (``Castilla.``, ``R/P``) and that
    the corpus writes whole more often than split (two passes over ``sentences``), the
    most frequent first: ``RawText`` keeps them whole, as the corpus did."""
    counts = Counter(token for sentence in sentences for token in sentence)
    split_as: dict[tuple[str, ...], str] = {}
    for token in counts:
        spans = pretokenizer.spans(token)
        if 1 < len(spans) <= 4:
            split_as[tuple(token[s:e] for s, e in spans)] = token
    written_split: Counter[str] = Counter()
    for sentence in sentences:
        for n in (2, 3, 4):
            for i in range(len(sentence) - n + 1):
                token = split_as.get(tuple(sentence[i : i + n]))
                if token is not None:
                    written_split[token] += 1
    kept = [t for t in split_as.values() if counts[t] > written_split[t]]
    return sorted(kept, key=lambda t: (-counts[t], t))[:limit]


class RawText:
    """A model's way from raw text to its tokens: pretokenizer (keeping whole the
    tokens the training corpus writes whole), then normaliser.

    Args:
        pretokenizer, normalizer: as above (defaults: white space, nothing normalised).
        whole: tokens to keep whole where the pretokenizer would split them and the
            characters touch (``whole_tokens``).
    """

    def __init__(self, pretokenizer: Pretokenizer | None = None,
                 normalizer: TextNormalizer | None = None,
                 whole: Iterable[str] = ()) -> None:  # fmt: skip
        self.pretokenizer = pretokenizer or Pretokenizer()
        self.normalizer = normalizer or TextNormalizer()
        self.whole = frozenset(whole)

    def tokenize(self, text: str) -> tuple[list[str], list[Span]]:
        """The model's tokens of raw ``text`` and each one's span in ``text``."""
        spans = self._kept_whole(text, self.pretokenizer.spans(text))
        found = self.normalizer.tokens(text, spans)
        return [t for t, _ in found], [s for _, s in found]

    def sentences(self, text: str) -> list[tuple[list[str], list[Span]]]:
        """``tokenize`` for each sentence of a document, spans into the whole document."""
        return [
            ([t for t, _ in found], [s for _, s in found])
            for found in (self.normalizer.tokens(text, self._kept_whole(text, spans))
                          for spans in self.pretokenizer.sentences(text))
        ]  # fmt: skip

    def _kept_whole(self, text: str, spans: list[Span]) -> list[Span]:
        """Touching spans joined where their text is a token of ``whole`` (longest first)."""
        if not self.whole:
            return spans
        out: list[Span] = []
        i = 0
        while i < len(spans):
            end = i
            for j in range(min(i + 3, len(spans) - 1), i, -1):
                touching = all(spans[k][1] == spans[k + 1][0] for k in range(i, j))
                if touching and text[spans[i][0] : spans[j][1]] in self.whole:
                    end = j
                    break
            out.append((spans[i][0], spans[end][1]))
            i = end + 1
        return out

    def describe(self) -> str:
        """One line for the log: the pretokenizer and the normalisation learned."""
        p = self.pretokenizer
        settings = [k for k, v in self.normalizer.state_dict().items() if v is True]
        where = f" ({p.language})" if p.kind == "spacy" else ""
        return (f"{p.kind}{where}, normalised: {', '.join(settings) or 'nothing'}, "
                f"{len(self.whole)} tokens kept whole")  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"pretokenizer": self.pretokenizer.state_dict(),
                "normalizer": self.normalizer.state_dict(),
                "whole": sorted(self.whole)}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> RawText:
        """``None`` (a codec saved before raw text was handled): whitespace, unchanged."""
        if state is None:
            return cls()
        return cls(Pretokenizer.from_state(state["pretokenizer"]),
                   TextNormalizer.from_state(state["normalizer"]),
                   state.get("whole", ()))  # fmt: skip
