"""The RNN: an encoder (fused nn.RNN/LSTM/GRU over whole sequences) and, for sequence
outputs, a decoder conditioned on the encoder's final state, teacher-forced in training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from models.data import BOS, PAD

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}  # nn.RNN is the Elman tanh cell

State = Tensor | tuple[Tensor, Tensor]  # (layers, batch, hidden); LSTM adds its cell state


def recurrent(cell: str, input_size: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    """A fused multi-layer recurrent block of the named cell."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
    # nn.RNN-style dropout acts between layers only, and warns when there is one layer
    between = dropout if layers > 1 else 0.0
    return CELLS[cell](input_size, hidden, layers, batch_first=True, dropout=between)


def _pick(state: State, index: Tensor) -> State:
    """Select batch entries of a (layers, batch, hidden) state, or of both LSTM parts."""
    if isinstance(state, tuple):
        return state[0].index_select(1, index), state[1].index_select(1, index)
    return state.index_select(1, index)


@dataclass(frozen=True)
class RNNConfig:
    input_size: int  # numbers per vector, or the input vocabulary size for tokens
    tokens: bool  # token ids in (embedded, variable length) rather than one vector
    output_size: int
    output_len: int  # decoder steps for sequence outputs
    sequence_output: bool  # decode a token sequence (1->N, N->M) rather than one label
    cell: str = "gru"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0


class RNN(nn.Module):
    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.autoregressive = config.sequence_output  # metrics need greedy decoding
        self._lstm = config.cell == "lstm"  # its state is a (hidden, cell) pair
        # the encoder's outputs are its whole state: one layer, and no LSTM cell state
        self._state_is_output = config.layers == 1 and not self._lstm
        # on CUDA, every batch of one size runs the same kernels unless the encoder packs
        packs_on_cuda = config.tokens and config.sequence_output and not self._state_is_output
        self.graphable = not packs_on_cuda
        h = config.hidden
        self.embed = nn.Embedding(config.input_size, h, padding_idx=PAD) if config.tokens else None
        width = h if config.tokens else config.input_size
        self.encoder = recurrent(config.cell, width, h, config.layers, config.dropout)
        if config.sequence_output:
            self.target_embed = nn.Embedding(config.output_size, h)
            # each decoder step reads the previous token and the encoder's summary of the input
            self.decoder = recurrent(config.cell, 2 * h, h, config.layers, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(h, config.output_size)

    def _zeros(self, batch: int) -> State:
        weight = self.head.weight
        shape = (self.config.layers, batch, self.config.hidden)
        if self._lstm:
            return weight.new_zeros(shape), weight.new_zeros(shape)
        return weight.new_zeros(shape)

    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, State | None]:
        """The input's summary (batch, hidden) and the final state of every encoder layer; the
        state is None where only the summary was computed (see `_over_padding`)."""
        if self.embed is None:
            inputs = x[:, None, :]  # (batch, 1, features): a vector is a one-step sequence
            _, state = self.encoder(inputs, self._zeros(x.shape[0]))
            return self._top(state), state
        if self._over_padding(x):
            return self._encode_over_padding(x)
        # Packing stops each sequence at its own length and needs the batch longest first. The
        # order is sorted where x lives, the lengths on the CPU (packing reads them there): no
        # host-to-device copy, which would wait for the GPU's queue to drain.
        order = (x != PAD).sum(1).sort(descending=True, stable=True).indices
        lengths = lengths.sort(descending=True, stable=True).values  # the same stable order
        embedded = self.drop(self.embed(x.index_select(0, order)))  # (batch, time, hidden)
        inputs = pack_padded_sequence(embedded, lengths, batch_first=True)
        _, state = self.encoder(inputs, self._zeros(x.shape[0]))
        state = _pick(state, order.argsort())  # back to the caller's order
        return self._top(state), state

    def _top(self, state: State) -> Tensor:
        return (state[0] if self._lstm else state)[-1]  # (batch, hidden)

    def _over_padding(self, x: Tensor) -> bool:
        """Whether to run the encoder over the padding, not packed, and read each sequence's
        output at its last token. Packing saves the CPU work on the padding; on a GPU, where
        kernel launches are the cost, it adds about forty a batch (sort, gather, pack, their
        backward). The outputs give the top layer's state only: enough for a label, or for a
        decoder when there is one layer and no LSTM cell state."""
        return x.is_cuda and (not self.config.sequence_output or self._state_is_output)

    def _encode_over_padding(self, x: Tensor) -> tuple[Tensor, State | None]:
        embedded = self.drop(self.embed(x))  # (batch, time, hidden)
        out, _ = self.encoder(embedded, self._zeros(x.shape[0]))  # (batch, time, hidden)
        last = (x != PAD).sum(1) - 1  # padding comes after the tokens, so never reaches here
        top = out.gather(1, last[:, None, None].expand(-1, 1, out.shape[2]))[:, 0]
        return top, top[None] if self._state_is_output else None

    def _decode_step(self, tokens: Tensor, context: Tensor, state: State) -> tuple[Tensor, State]:
        """Logits after reading `tokens` (batch, time) given the context; the new state."""
        embedded = self.target_embed(tokens)  # (batch, time, hidden)
        inputs = torch.cat([embedded, context[:, None, :].expand_as(embedded)], -1)
        out, state = self.decoder(self.drop(inputs), state)  # (batch, time, hidden)
        return self.head(self.drop(out)), state  # (batch, time, classes)

    def forward(self, x: Tensor, lengths: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits (batch, steps, classes); sequence outputs are teacher-forced with `y`."""
        context, state = self.encode(x, lengths)
        if not self.config.sequence_output:
            return self.head(self.drop(context))[:, None, :]  # (batch, 1, classes)
        previous = torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], 1)  # (batch, steps)
        return self._decode_step(previous, context, state)[0]

    def decode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Greedy predictions (batch, steps): each step reads the previous step's argmax."""
        if not self.config.sequence_output:
            return self.forward(x, lengths).argmax(-1)  # (batch, 1)
        context, state = self.encode(x, lengths)
        token = torch.full((x.shape[0], 1), BOS, dtype=torch.long, device=context.device)
        predicted = []
        for _ in range(self.config.output_len):
            logits, state = self._decode_step(token, context, state)
            token = logits.argmax(-1)  # (batch, 1)
            predicted.append(token)
        return torch.cat(predicted, 1)  # (batch, steps)
