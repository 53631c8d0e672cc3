"""Contextual string embeddings (Akbik et al. 2018): a word's features are the states
of character language models that read the whole sentence, character by character.

A forward LM reads the sentence's text; a word is its state after the word's last
character. A backward LM (trained on reversed text) reads the sentence reversed; a
word is its state after the word's first character, that is, before it in the
sentence's order. Each LM runs once per sentence, over every word at once; frozen LMs
can keep each sentence's features (``cache_mb``) so that training computes them once
for all its epochs.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seqnlp.nn.padded_rnn import reversal_index, reverse_within

if TYPE_CHECKING:  # seqnlp.models imports this module: the network is imported when used
    from seqnlp.models.language_model import LanguageModelNetwork


class ContextualCharFeatures(nn.Module):
    """Word features (batch, time, sum of the LMs' hidden sizes) from trained character
    LMs, computed from a model's own character ids (the tagger's, the classifier's).

    Args:
        lms: the language models' networks (their weights are this module's; their
            output layers, which predict the next character, are dropped).
        backward: per LM, whether it reads text reversed.
        special_ids: per LM, its ids of the space between words and of the paragraph
            boundary.
        num_chars: the model's character vocabulary size; the buffer ``char_maps``
            (LMs, num_chars) holds each LM's id of each of the model's characters.
        trainable: fine-tune the LMs with the model (else frozen: no gradient, and
            always in eval mode, so no dropout inside them).
    """

    def __init__(
        self, lms: list[LanguageModelNetwork], backward: list[bool],
        special_ids: list[tuple[int, int]], num_chars: int, trainable: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        if not len(lms) == len(backward) == len(special_ids):
            raise ValueError(f"{len(lms)} language models, {len(backward)} directions")
        for lm in lms:  # only the states are read: the next-character layers go
            lm.output = None  # type: ignore[assignment]
            lm.projection = None
        self.lms = nn.ModuleList(lms)
        self.backward = list(backward)
        self.special_ids = list(special_ids)
        self.trainable = trainable
        self.output_size = sum(lm.hidden_size for lm in lms)
        self.register_buffer("char_maps", torch.zeros(len(lms), num_chars, dtype=torch.long))
        if not trainable:
            self.lms.requires_grad_(False).eval()
        #: megabytes of features that frozen LMs keep, one entry per distinct sentence
        #: (the training systems set it; 0: computed every time). The features of a
        #: sentence depend on its characters alone, so epochs after the first read them.
        self.cache_mb = 0.0
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the kept features (they are also forgotten when the weights change)."""
        self._cache: dict[bytes, torch.Tensor] = {}
        self._cache_bytes = 0
        self._stamp: tuple[Any, ...] | None = None
        self._padding: torch.Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles leave the cache out
        state = dict(self.__dict__)
        state.update(_cache={}, _cache_bytes=0, _stamp=None, _padding=None)
        return state

    @classmethod
    def from_specs(
        cls, specs: list[dict], num_chars: int, trainable: bool = False
    ) -> ContextualCharFeatures:
        """The module that ``specs`` describe (what ``seqnlp.tasks.char_lms.read_char_lm``
        keeps of each LM checkpoint: ``network``, ``LanguageModelNetwork``'s arguments;
        ``backward``; ``space_id`` and ``boundary_id``), with freshly drawn weights for
        the caller to load."""
        if num_chars < 1:
            raise ValueError("character language models need the model's character vocabulary")
        from seqnlp.models.language_model import LanguageModelNetwork

        return cls(
            [LanguageModelNetwork(**spec["network"]) for spec in specs],
            [bool(spec["backward"]) for spec in specs],
            [(int(spec["space_id"]), int(spec["boundary_id"])) for spec in specs],
            num_chars, trainable,
        )  # fmt: skip

    def train(self, mode: bool = True) -> ContextualCharFeatures:
        super().train(mode)
        if not self.trainable:
            self.lms.eval()  # frozen LMs never drop out
        return self

    def forward(self, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features (batch, time, output_size) of sentences given as the model's
        character ids (batch, time, chars) with their lengths (batch,) in words: kept
        ones where frozen LMs have ``cache_mb``, else ``compute``d."""
        if self.trainable or self.cache_mb <= 0:
            return self.compute(char_ids, lengths)
        return self._cached(char_ids, lengths)

    def compute(self, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``forward``'s features (batch, time, output_size), computed by the LMs; a
        padded word has the LMs' state after the paragraph boundary."""
        if not self.trainable and any(m.training for m in self.lms.modules()):
            # Lightning restores each module's flag directly, not through ``train``
            self.lms.eval()
        features = []
        for k, lm in enumerate(self.lms):
            space, boundary = self.special_ids[k]
            fwd, bwd, ends, starts = sentence_char_ids(
                char_ids, lengths, self.char_maps[k], space, boundary
            )
            ids, where = (bwd, starts) if self.backward[k] else (fwd, ends)
            features.append(self.states_at(lm, ids, where))
        return torch.cat(features, dim=-1)

    def _cached(self, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``compute``'s features (batch, time, output_size), each sentence's taken from
        the cache, or computed (those not kept, in one batch) and kept while
        ``cache_mb`` allows."""
        stamp = self._weights_stamp()
        if stamp != self._stamp:
            self.clear_cache()
            self._stamp = stamp
        batch, time, _ = char_ids.shape
        sizes = lengths.tolist()
        keys = sentence_keys(char_ids, sizes)
        rows = [self._cache.get(key) for key in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            index = torch.tensor(missing, device=char_ids.device)
            width = max(sizes[i] for i in missing)
            computed = self.compute(char_ids[index, :width], lengths[index])
            limit = self.cache_mb * 2**20
            for j, i in enumerate(missing):
                rows[i] = row = computed[j, : sizes[i]].clone()  # (words, output_size)
                if self._cache_bytes + row.nbytes <= limit:
                    self._cache[keys[i]] = row
                    self._cache_bytes += row.nbytes
        if self._padding is None:  # a padded word's: the state after the boundary alone
            self._padding = self.compute(char_ids.new_zeros(1, 1, 1), lengths.new_ones(1))[0, 0]
        out = self._padding.to(rows[0].dtype).expand(batch, time, -1).clone()
        for i, row in enumerate(rows):
            out[i, : sizes[i]] = row
        return out

    def _weights_stamp(self) -> tuple[Any, ...]:
        """What the kept features depend on besides the text: the LMs' weights (their
        storage and in-place version: loading a checkpoint changes them), the
        character maps, and autocast."""
        tensors = [*self.lms.parameters(), self.char_maps]
        return (*((t.data_ptr(), t._version, t.dtype) for t in tensors),
                torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda"))  # fmt: skip

    def states_at(
        self, lm: LanguageModelNetwork, ids: torch.Tensor, where: torch.Tensor
    ) -> torch.Tensor:
        """``lm``'s top states (batch, time, hidden) at positions ``where`` (batch, time)
        after reading ids (batch, chars), each row once from the start."""
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            states, _ = lm.hidden_states(ids)  # (batch, chars, hidden)
        index = where.unsqueeze(-1).expand(-1, -1, states.size(-1))  # (batch, time, hidden)
        return states.gather(1, index)


def sentence_keys(char_ids: torch.Tensor, sizes: list[int]) -> list[bytes]:
    """One key per sentence of char ids (batch, time, chars) with ``sizes`` words each:
    its words' characters, whatever the batch's padding."""
    ids = char_ids.detach().cpu()
    width = ((ids != 0).sum(-1)).amax(-1).tolist()  # (batch,) longest word per sentence
    return [
        struct.pack("<II", n, w) + ids[i, :n, :w].contiguous().numpy().tobytes()
        for i, (n, w) in enumerate(zip(sizes, width, strict=True))
    ]


def sentence_char_ids(
    char_ids: torch.Tensor, lengths: torch.Tensor, char_map: torch.Tensor, space_id: int,
    boundary_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Each sentence's text as a language model reads it, from the model's own inputs.

    Args:
        char_ids: (batch, time, chars) the model's character ids of each word (0:
            padding), right-padded.
        lengths: (batch,) words per sentence.
        char_map: (model characters,) the LM's id of each of the model's characters.
        space_id, boundary_id: the LM's ids of the space between words and of the
            paragraph boundary, which comes first (the LM saw every paragraph start
            after one) and pads the rows.

    Returns:
        forward_ids (batch, 1 + chars in the sentence), the boundary then the words
        joined by spaces; backward_ids, the boundary then that text reversed; ends
        (batch, time), each word's last character's position in forward_ids; starts
        (batch, time), each word's first character's position in backward_ids.
        Padded words point at position 0.
    """
    batch, time, _ = char_ids.shape
    word_mask = torch.arange(time, device=char_ids.device) < lengths.unsqueeze(1)  # (batch, time)
    word_len = ((char_ids != 0).sum(-1)) * word_mask  # (batch, time)
    span = torch.where(word_mask, word_len + 1, 0)  # each word and the space after it
    first = 1 + torch.cumsum(span, dim=1) - span  # (batch, time) first char's position
    total = 1 + span.sum(1) - 1  # (batch,) boundary + text (no space after the last word)
    width = int(total.max())
    forward_ids = char_ids.new_full((batch, width), space_id)
    forward_ids[torch.arange(width, device=char_ids.device) >= total.unsqueeze(1)] = boundary_id
    forward_ids[:, 0] = boundary_id
    chars = char_ids != 0  # (batch, time, chars)
    b, t, c = chars.nonzero(as_tuple=True)
    forward_ids[b, first[b, t] + c] = char_map[char_ids[b, t, c]]
    ends = torch.where(word_mask, first + word_len - 1, 0)
    # reversed text: position p of the text (1..total-1) goes to total - p
    text = forward_ids[:, 1:]  # (batch, width - 1)
    backward_ids = forward_ids.clone()
    if width > 1:
        index = reversal_index(total - 1, width - 1)  # (batch, width - 1)
        backward_ids[:, 1:] = reverse_within(text.unsqueeze(-1), index)[..., 0]
    starts = torch.where(word_mask, total.unsqueeze(1) - first, 0)
    return forward_ids, backward_ids, ends, starts


def sentence_positions(tokens: list[str]) -> tuple[str, list[int], list[int]]:
    """A sentence's text for the LMs (tokens joined by single spaces), each token's last
    character's index in it, and each token's first character's index in the
    reversed text."""
    text = " ".join(tokens)
    ends, starts, start = [], [], 0
    for token in tokens:
        end = start + len(token) - 1
        ends.append(end)
        starts.append(len(text) - 1 - start)
        start += len(token) + 1
    return text, ends, starts
