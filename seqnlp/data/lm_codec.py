"""The language model's codec: how its raw text becomes the symbols it reads (characters,
white-space words or SentencePiece pieces) and back. Plain data, no torch, like the
other codecs (``seqnlp.data.codecs``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from seqnlp.tokenization import SentencePieceTokenizer, StateEquality, Vocab

LMLevel = Literal["char", "word", "sentencepiece"]
LMDirection = Literal["forward", "backward"]
#: the paragraph boundary that ends every line of a language model's text, per level
#: (SentencePiece: its ``</s>``).
LM_BOUNDARY = {"char": "\n", "word": "<eos>"}
_LM_UNITS = {"char": "character", "word": "word", "sentencepiece": "piece"}


class LanguageModelCodec(StateEquality):
    """The language model's codec: the symbols it reads (characters, white-space words or
    SentencePiece pieces), the paragraph boundary that ends every line of its text, and
    the reading direction (``backward``: each paragraph is read from its end).

    Ids: characters and words: ``<unk>`` = 0, the boundary (``\\n`` / ``<eos>``) = 1, then
    the symbols by descending frequency (no padding id); pieces: SentencePiece's ids
    (``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3 = the boundary). ``encode`` gives ids in
    reading order; ``decode`` takes ids in reading order and gives text in writing order.
    """

    def __init__(
        self, level: LMLevel, vocab: Vocab | None = None,
        pieces: SentencePieceTokenizer | None = None, direction: LMDirection = "forward",
        lowercase: bool = False,
    ) -> None:  # fmt: skip
        if level not in _LM_UNITS:
            raise ValueError(f"level must be char, word or sentencepiece, got {level!r}")
        if direction not in ("forward", "backward"):
            raise ValueError(f"direction must be forward or backward, got {direction!r}")
        self.level, self.direction, self.lowercase = level, direction, lowercase
        self.vocab, self.pieces = vocab, pieces
        if level == "sentencepiece":
            if pieces is None or pieces.eos_id < 0:
                raise ValueError("a sentencepiece language model needs pieces with </s>")
            self.boundary_id = pieces.eos_id
            #: ids that generation never emits (padding, unknown, sentence start).
            self.never_generated: tuple[int, ...] = (pieces.pad_id, pieces.unk_id, pieces.bos_id)
        else:
            boundary = LM_BOUNDARY[level]
            if vocab is None or vocab.pad is not None or vocab.itos[1:2] != [boundary]:
                raise ValueError(f"a {level} language model needs a vocabulary of <unk>, "
                                 f"{boundary!r}, then its symbols")  # fmt: skip
            self.boundary_id = 1
            self.never_generated = (vocab.unk_id,)

    @classmethod
    def fit(
        cls, lines: Iterable[str], level: LMLevel = "char", direction: LMDirection = "forward",
        min_freq: int = 1, max_vocab_size: int | None = None, lowercase: bool = False,
        vocab_size: int = 8000, sp_model_type: str = "unigram", sp_sample_lines: int | None = None,
    ) -> LanguageModelCodec:  # fmt: skip
        """Fit on training paragraphs in one pass: characters and words are counted (the
        ``max_vocab_size`` most frequent of those seen ``min_freq`` times kept);
        SentencePiece trains on a uniform sample of ``sp_sample_lines`` lines (all: None)."""
        cased = (line.lower() for line in lines) if lowercase else iter(lines)
        if level == "sentencepiece":
            pieces = SentencePieceTokenizer.fit(cased, vocab_size, sp_model_type, bos_eos=True,
                                                max_sentences=sp_sample_lines)  # fmt: skip
            return cls(level, pieces=pieces, direction=direction, lowercase=lowercase)
        split: Callable[[str], Iterable[str]] = str.split if level == "word" else (lambda s: s)
        counted = Vocab.fit(map(split, cased), min_freq, max_vocab_size, pad=None)
        boundary = LM_BOUNDARY.get(level, "")
        symbols = [boundary, *(s for s in counted.itos[1:] if s != boundary)]
        return cls(level, Vocab(symbols, pad=None), direction=direction, lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.pieces) if self.pieces is not None else len(self.vocab or ())

    @property
    def unit(self) -> str:
        """What one token is: ``character``, ``word`` or ``piece``."""
        return _LM_UNITS[self.level]

    def symbols(self, text: str) -> list[str]:
        """The symbols of ``text`` in writing order."""
        text = text.lower() if self.lowercase else text
        if self.level == "char":
            return list(text)
        if self.level == "word":
            return text.split()
        assert self.pieces is not None
        return self.pieces.processor.encode(text, out_type=str)

    def encode_symbols(self, symbols: Iterable[str]) -> list[int]:
        """Ids of symbols as given (unknown ones: the unknown id)."""
        if self.pieces is not None:
            return [self.pieces.processor.piece_to_id(s) for s in symbols]
        assert self.vocab is not None
        return self.vocab.encode(symbols)

    def encode(self, text: str) -> list[int]:
        """Ids of one paragraph in reading order (reversed for a backward model), without
        the boundary."""
        if self.pieces is not None:
            ids = self.pieces.processor.encode(text.lower() if self.lowercase else text)
        else:
            ids = self.encode_symbols(self.symbols(text))
        return ids[::-1] if self.direction == "backward" else ids

    def symbol(self, i: int) -> str:
        if self.pieces is not None:
            return self.pieces.id_to_piece(i)
        assert self.vocab is not None
        return self.vocab.itos[i]

    def decode(self, ids: Iterable[int]) -> str:
        """Text in writing order of ids in reading order; boundaries become line breaks."""
        ids = list(ids)[::-1] if self.direction == "backward" else list(ids)
        lines: list[list[int]] = [[]]
        for i in ids:
            if i == self.boundary_id:
                lines.append([])
            else:
                lines[-1].append(i)
        return "\n".join(self._decode_line(line) for line in lines)

    def _decode_line(self, ids: list[int]) -> str:
        if self.pieces is not None:
            return self.pieces.decode(ids)
        joiner = "" if self.level == "char" else " "
        return joiner.join(self.symbol(i) for i in ids)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"level": self.level, "direction": self.direction,
                                 "lowercase": self.lowercase}  # fmt: skip
        if self.pieces is not None:
            state["pieces"] = self.pieces.state_dict()
        else:
            assert self.vocab is not None
            state["vocab"] = self.vocab.state_dict()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LanguageModelCodec:
        pieces = state.get("pieces")
        vocab = state.get("vocab")
        return cls(state["level"], Vocab.from_state(vocab) if vocab is not None else None,
                   SentencePieceTokenizer.from_state(pieces) if pieces is not None else None,
                   state["direction"], state["lowercase"])  # fmt: skip
