"""The recurrent encoder shared by every task: any cell of ``seqnlp.nn.cells`` over
padded batches, with the stack's options (residual connections, layer norm, locked
dropout, weight drop, initial states, initialisation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqnlp.nn import folded_rnn
from seqnlp.nn.cells import CELLS, CUSTOM_CELLS, GATES, LSTM_LIKE, CustomCell
from seqnlp.nn.dropout import DROPOUT_MODES, DropoutMode
from seqnlp.nn.layered_rnn import Stack, run_layered
from seqnlp.nn.padded_rnn import run_padded

Cell = Literal[
    "rnn", "rnn_relu", "gru", "lstm", "peephole_lstm", "cifg_lstm", "layernorm_lstm",
    "layernorm_gru",
]  # fmt: skip
Init = Literal["default", "orthogonal", "xavier"]
INITS = ("default", "orthogonal", "xavier")
Recurrence = Literal["folded", "padded", "packed", "layered"]
_TORCH: dict[str, tuple[type[nn.RNNBase], dict[str, str]]] = {
    "rnn": (nn.RNN, {"nonlinearity": "tanh"}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {}),
}  # fmt: skip

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def lengths_mask(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """(batch, time) bool, True on each row's first ``length`` positions; lengths (batch,)."""
    return torch.arange(time, device=lengths.device) < lengths.unsqueeze(1)


def check_recurrent_options(
    cell: str, init: str, dropout_mode: str, weight_drop: float, forget_bias: float | None
) -> None:
    """Refuse recurrent options that no encoder takes, in one line each."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}: expected one of {', '.join(CELLS)}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: expected one of {', '.join(INITS)}")
    if dropout_mode not in DROPOUT_MODES:
        raise ValueError(f"unknown dropout_mode {dropout_mode!r}: expected standard or locked")
    if not 0.0 <= weight_drop < 1.0:
        raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
    if forget_bias is not None and cell not in LSTM_LIKE:
        raise ValueError(
            f"forget_bias sets an LSTM's forget-gate bias; cell {cell} has no forget gate "
            f"(cells with one: {', '.join(LSTM_LIKE)})"
        )


class RNNEncoder(nn.Module):
    """Stacked, optionally bidirectional recurrent encoder over padded batches.

    Padding never enters the recurrence. ``recurrence`` chooses how it runs (padded
    on CPU, packed on GPU and for int8 models, in CPU inference over token ids from a
    table of first-layer input projections, and layer by layer where the stack's
    options or a custom cell need it); all give the same results.

    Args:
        input_size: features per time step.
        hidden_size: units per direction.
        num_layers: stacked layers; ``dropout`` is applied between them.
        cell: one of ``seqnlp.nn.cells.CELLS``: ``rnn`` (tanh), ``rnn_relu``, ``gru``,
            ``lstm`` (torch's fused kernels), ``peephole_lstm``, ``cifg_lstm``,
            ``layernorm_lstm``, ``layernorm_gru`` (``seqnlp.nn.cells``).
        bidirectional: run a backward layer too; outputs concatenate both.
        dropout: between stacked layers.
        learn_initial_state: start from a learned state instead of zeros.
        init: ``default`` (torch's uniform), ``orthogonal`` (recurrent matrices
            orthogonal gate by gate, Saxe et al. 2014) or ``xavier`` (input and
            recurrent matrices Glorot-uniform gate by gate); both zero the biases.
        residual: add each layer's input to its output, from the second layer on.
        layer_norm: layer-normalise each layer's output before the next layer.
        dropout_mode: ``standard`` or ``locked`` (one mask per sequence between layers
            and, in custom cells, on the recurrent state).
        weight_drop: DropConnect probability on the recurrent matrices in training.
        forget_bias: the forget gate's initial bias (LSTM-like cells); None: as ``init``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        learn_initial_state: bool = False,
        init: Init = "default",
        *,
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        check_recurrent_options(cell, init, dropout_mode, weight_drop, forget_bias)
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.dropout_mode = dropout_mode
        self.weight_drop = weight_drop
        self.residual = residual
        self.rnn: nn.RNNBase | None = None
        self.cells: nn.ModuleList | None = None
        if cell in CUSTOM_CELLS:
            self.cells = nn.ModuleList(
                CustomCell(cell, input_size if layer == 0 else hidden_size * self.directions,
                           hidden_size)
                for layer in range(num_layers) for _ in range(self.directions)
            )  # fmt: skip
        else:
            kind, extra = _TORCH[cell]
            self.rnn = kind(
                input_size,
                hidden_size,
                num_layers=num_layers,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if num_layers > 1 else 0.0,
                **extra,
            )
        self.output_size = hidden_size * self.directions
        self.norms: nn.ModuleList | None = None
        if layer_norm and num_layers > 1:
            norms = [nn.LayerNorm(self.output_size) for _ in range(num_layers - 1)]
            self.norms = nn.ModuleList(norms)
        states = num_layers * self.directions
        self.initial_h: nn.Parameter | None = None
        self.initial_c: nn.Parameter | None = None
        if learn_initial_state:
            self.initial_h = nn.Parameter(torch.zeros(states, 1, hidden_size))
            if cell in LSTM_LIKE:
                self.initial_c = nn.Parameter(torch.zeros(states, 1, hidden_size))
        self._initialise(init, forget_bias)
        self._table = _TableCache()

    @property
    def lstm_like(self) -> bool:
        """Whether the state is a pair (hidden, cell)."""
        return self.cell in LSTM_LIKE

    def _recurrent_matrices(self) -> list[tuple[str, torch.Tensor, int]]:
        """(name, matrix, gates) of every input and recurrent weight matrix."""
        if self.rnn is not None:
            gates = {"LSTM": 4, "GRU": 3}.get(self.rnn.mode, 1)
            return [(n, w, gates) for n, w in self.rnn.named_parameters() if n.startswith("weight")]
        assert self.cells is not None
        return [
            (f"{i}.{n}", w, len(GATES[self.cell]))
            for i, c in enumerate(self.cells)
            for n, w in c.named_parameters()
            if n in ("weight_ih", "weight_hh")
        ]

    @torch.no_grad()
    def _initialise(self, init: str, forget_bias: float | None) -> None:
        if init != "default":
            for name, weight, _ in self._recurrent_matrices():
                recurrent = "weight_hh" in name
                if init == "orthogonal" and not recurrent:
                    continue
                for gate in weight.split(self.hidden_size, dim=0):  # (hidden, in) each
                    (nn.init.orthogonal_ if init == "orthogonal" else nn.init.xavier_uniform_)(gate)
            for name, bias in self.named_parameters():
                if name.split(".")[-1].startswith("bias"):
                    bias.zero_()
        if forget_bias is None:
            return
        n = self.hidden_size
        if self.rnn is not None:  # torch's LSTM: i, f, g, o; the two biases add
            for name, bias in self.rnn.named_parameters():
                if name.startswith("bias"):
                    bias[n : 2 * n] = forget_bias if name.startswith("bias_ih") else 0.0
            return
        assert self.cells is not None
        for cell in self.cells:
            assert isinstance(cell, CustomCell)
            rows = cell.gate_rows("forget")
            cell.bias_ih[rows] = forget_bias
            if cell.bias_hh is not None:
                cell.bias_hh[rows] = 0.0

    def learned_initial(self, batch: int) -> State | None:
        """The learned initial state expanded to ``batch`` (None when not learned)."""
        if self.initial_h is None:
            return None
        h = self.initial_h.expand(-1, batch, -1).contiguous()
        if self.initial_c is not None:
            return h, self.initial_c.expand(-1, batch, -1).contiguous()
        return h

    def zero_state(self, batch: int, like: torch.Tensor) -> State:
        """Zeros (layers * directions, batch, hidden) (a pair for LSTM-like cells)."""
        h = like.new_zeros(self.num_layers * self.directions, batch, self.hidden_size)
        return (h, torch.zeros_like(h)) if self.lstm_like else h

    def layered(self) -> bool:
        """Whether this encoder must run layer by layer (``run_layered``) now: a custom
        cell, residual connections or layer norm, or, in training, locked dropout
        between layers or weight drop."""
        if self.cells is not None or self.residual or self.norms is not None:
            return True
        if not self.training:
            return False
        locked_between = self.dropout_mode == "locked" and self.dropout > 0 and self.num_layers > 1
        return locked_between or self.weight_drop > 0

    def recurrence(
        self, inputs: torch.Tensor, embedding: nn.Embedding | None = None
    ) -> Recurrence:
        """How this encoder runs over ``inputs`` (batch, time[, features]): the one place
        that chooses among the ways, which all give the same results (to float rounding).

        - ``folded``: ``encode_tokens`` reads the first layer's input projections of the
          token ids from a table computed once per entry of ``embedding``: in inference
          (eval mode, no autograd, no autocast) on the CPU, for a float32 ``torch.nn``
          GRU or tanh / ReLU RNN reading ``embedding`` directly, with a table of at most
          ``folded_rnn.MAX_TABLE_BYTES`` (an LSTM keeps oneDNN's fused kernel, which a
          step loop beats only in a corner of shapes);
        - ``padded``: a ``torch.nn`` RNN on the CPU runs over the padded batch one layer
          and direction at a time (``run_padded``: oneDNN's fused LSTM, one input matmul
          for all steps);
        - ``packed``: on a GPU (cuDNN runs packed batches well) and for int8 dynamically
          quantized RNNs, which have kernels of their own;
        - ``layered``: ``run_layered``, one layer and direction at a time with what goes
          between layers, wherever ``layered()`` says so (custom cells, residual, layer
          norm; locked dropout between layers or weight drop in training).
        """
        if self.layered():
            return "layered"
        if inputs.device.type != "cpu" or not isinstance(self.rnn, nn.RNNBase):
            return "packed"
        if (
            embedding is not None
            and self.rnn.mode in folded_rnn.FOLDABLE
            and not self.training
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and embedding.weight.dtype == torch.float32
            and embedding.embedding_dim == self.rnn.input_size
            and folded_rnn.table_bytes(embedding.num_embeddings, self.rnn)
            <= folded_rnn.MAX_TABLE_BYTES
        ):
            return "folded"
        return "padded"

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode.

        Args:
            inputs: (batch, time, input_size).
            lengths: (batch,) real lengths, each >= 1.
            initial: optional initial state, (layers * directions, batch, hidden)
                (a pair of those for LSTM-like cells); default the learned state, or
                zeros.

        Returns:
            outputs: (batch, time, output_size), zeros at padded positions.
            final: the hidden state after the last real step of each layer and
                direction, (layers * directions, batch, hidden) (for LSTM the
                hidden state, not the cell state).
        """
        if initial is None:
            initial = self.learned_initial(inputs.size(0))
        way = self.recurrence(inputs)
        if way == "layered":
            outputs, h, _ = self._run_layered(inputs, lengths, initial)
            return outputs, h
        if way == "padded":
            assert self.rnn is not None
            return run_padded(self.rnn, inputs, lengths, initial)
        outputs, final = self._packed(inputs, lengths, initial)
        return outputs, final[0] if isinstance(final, tuple) else final

    def _packed(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None
    ) -> tuple[torch.Tensor, State]:
        """torch's module over the packed batch: outputs (batch, time, output_size) and
        its whole final state, each row's after its last real step."""
        assert self.rnn is not None
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed, initial)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.size(1))
        return outputs, final

    def _run_layered(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if initial is None:
            initial = self.zero_state(inputs.size(0), inputs)
        h0, c0 = initial if isinstance(initial, tuple) else (initial, None)
        stack = Stack(
            rnn=self.rnn, cells=self.cells, num_layers=self.num_layers,
            directions=self.directions, hidden_size=self.hidden_size,
            lstm_like=self.lstm_like, dropout=self.dropout,
            locked=self.dropout_mode == "locked", weight_drop=self.weight_drop,
            residual=self.residual, norms=self.norms, training=self.training,
        )  # fmt: skip
        return run_layered(stack, inputs, lengths, h0, c0)

    def run(
        self, inputs: torch.Tensor, lengths: torch.Tensor | None = None,
        initial: State | None = None,
    ) -> tuple[torch.Tensor, State]:  # fmt: skip
        """Encode, returning the whole final state to carry on from: for a language
        model's truncated back-propagation through time, and for streaming.

        Args:
            inputs: (batch, time, input_size).
            lengths: (batch,) real lengths (default: every row is ``time`` long).
            initial: as ``forward``.

        Returns:
            outputs (batch, time, output_size), and the state after each row's last
            real step in ``initial``'s layout: (layers * directions, batch, hidden), a
            pair (hidden, cell) for LSTM-like cells.
        """
        batch, time = inputs.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), time, dtype=torch.long, device=inputs.device)
        if initial is None:
            initial = self.learned_initial(batch)
        full = bool((lengths == time).all())
        if self.rnn is not None and not isinstance(self.rnn, nn.RNNBase):  # int8: its kernels
            return self._run_packed_state(inputs, lengths, initial)
        if self.recurrence(inputs) == "layered" or (self.lstm_like and full):
            outputs, h, c = self._run_layered(inputs, lengths, initial)
            if self.lstm_like and c is None:  # a torch LSTM over a padded batch
                return self._run_packed_state(inputs, lengths, initial)
            return outputs, (h, c) if c is not None else h
        if not self.lstm_like:
            return self(inputs, lengths, initial)
        return self._run_packed_state(inputs, lengths, initial)

    def _run_packed_state(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None
    ) -> tuple[torch.Tensor, State]:
        if self.rnn is None or self.layered():  # (never for an int8 module: eval mode)
            raise ValueError(
                "the whole final state of a layered LSTM over rows of different lengths is "
                "not kept: run rows of one length"
            )
        return self._packed(inputs, lengths, initial)

    def step(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """One time step of a unidirectional encoder, in constant memory: x (batch,
        input_size) and the state (None: the initial one) -> the output (batch,
        hidden) and the new state."""
        if self.bidirectional:
            raise ValueError(
                "a bidirectional encoder reads the whole text before its first output: "
                "it cannot run one token at a time (train with bidirectional: false)"
            )
        if state is None:
            learned = self.learned_initial(x.size(0))
            state = learned if learned is not None else self.zero_state(x.size(0), x)
        if isinstance(self.rnn, nn.RNNBase) and not self.layered():
            return self._cell_step(x, state)
        if self.rnn is not None and self.cells is None and not self.layered():  # int8 module
            out, state = self.rnn(x.unsqueeze(1), state)  # (batch, 1, hidden)
            return out[:, 0], state
        outputs, state = self.run(x.unsqueeze(1), None, state)
        return outputs[:, 0], state

    def _cell_step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step of a unidirectional torch RNN / LSTM / GRU with torch's cell kernels,
        layer by layer: the module's own call has a fixed cost per sequence that one
        step does not amortise (about 5x slower at the language models' sizes)."""
        rnn = self.rnn
        assert isinstance(rnn, nn.RNNBase)
        h0, c0 = state if isinstance(state, tuple) else (state, None)
        cell = {"LSTM": _VF.lstm_cell, "GRU": _VF.gru_cell, "RNN_TANH": _VF.rnn_tanh_cell,
                "RNN_RELU": _VF.rnn_relu_cell}[rnn.mode]  # fmt: skip
        weights = rnn._flat_weights
        per_layer = len(weights) // rnn.num_layers
        hs, cs, inp = [], [], x
        for layer in range(rnn.num_layers):
            if layer > 0 and rnn.dropout > 0 and self.training:
                inp = nn.functional.dropout(inp, rnn.dropout, True)
            w = weights[layer * per_layer : (layer + 1) * per_layer]  # w_ih, w_hh, b_ih, b_hh
            if c0 is not None:
                h, c = cell(inp, (h0[layer], c0[layer]), *w)
                cs.append(c)
            else:
                h = cell(inp, h0[layer], *w)
            hs.append(h)
            inp = h
        h_all = torch.stack(hs)  # (layers, batch, hidden)
        return inp, ((h_all, torch.stack(cs)) if c0 is not None else h_all)

    def encode_tokens(
        self,
        embedding: nn.Embedding,
        token_ids: torch.Tensor,
        lengths: torch.Tensor,
        embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
        initial: State | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``self(embed(token_ids), lengths, initial)``, or the same from the input table
        where ``recurrence`` says ``folded``.

        Args:
            embedding: the token embeddings that the first layer reads in inference.
            token_ids: (batch, time), right-padded.
            lengths: (batch,) real lengths, each >= 1.
            embed: token ids to inputs (batch, time, input_size), with whatever
                training-time noise the caller adds (word dropout, dropout); it must be
                ``embedding`` itself in eval mode. Default: ``embedding``.

        Returns:
            outputs (batch, time, output_size) and final (layers * directions, batch,
            hidden), as ``forward``.

        The table is computed on first use and again after the module's mode changes
        (``train()`` / ``eval()``, as around every training phase) or the storage or
        version counter of a weight it depends on changes (``load_state_dict``,
        in-place edits, non-fused optimisers). A fused optimiser's step in eval mode,
        or a write through a weight's ``.data``, is not seen: switch modes after it.
        """
        if self.recurrence(token_ids, embedding) != "folded":
            inputs = (embed or embedding)(token_ids)  # (batch, time, input_size)
            return self(inputs, lengths, initial)
        if initial is None:
            initial = self.learned_initial(token_ids.size(0))
        params = self.rnn.named_parameters()
        first = [w for name, w in params if name.endswith(("_l0", "_l0_reverse"))]
        key = tuple((w.data_ptr(), w._version) for w in [embedding.weight, *first])
        table = self._table.get(key)
        if table is None:
            table = self._table.put(key, folded_rnn.input_table(embedding.weight, self.rnn))
        return folded_rnn.run_folded(self.rnn, table, token_ids, lengths, initial)

    def train(self, mode: bool = True) -> RNNEncoder:
        self._table.clear()  # weights may change in training: compute the table anew
        return super().train(mode)

    def top_states(self, final: torch.Tensor) -> torch.Tensor:
        """The top layer's final states, (batch, output_size), from ``final`` (layers *
        directions, batch, hidden): the forward direction's state at the last real
        token, then the backward direction's at the first."""
        return torch.cat(list(final[-self.directions :]), dim=-1)


class _TableCache:
    """One input table and the key of the weights it was computed from. Not part of
    the module's state: copies and pickles start empty."""

    def __init__(self) -> None:
        self._entry: tuple[tuple, torch.Tensor] | None = None

    def get(self, key: tuple) -> torch.Tensor | None:
        entry = self._entry
        return entry[1] if entry is not None and entry[0] == key else None

    def put(self, key: tuple, table: torch.Tensor) -> torch.Tensor:
        self._entry = (key, table)
        return table

    def clear(self) -> None:
        self._entry = None

    def __deepcopy__(self, memo: dict) -> _TableCache:
        return _TableCache()

    def __getstate__(self) -> dict:
        return {"_entry": None}
