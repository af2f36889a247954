"""Attention for NucEL: where the real tokens are, rotary tables, and the attention backends.

This file is copied next to every saved checkpoint with `modeling_nucel.py` and, like it, needs only torch
(`flash_attn` is optional and imported under a guard).

Two token layouts, computed once per forward pass and shared by every layer:

- `UnpaddedLayout` (SDPA and flash-attn 2): the real tokens of the batch in one flat stream, sequence after
  sequence, so linear layers never touch padding. A sequence is a row of the batch, or one of several sequences
  packed into a row (its `position_ids` restart at 0). Global layers attend within each sequence; local layers
  use banded attention over blocks of the stream, O(tokens x window) in time and memory.
- `PaddedLayout` (eager, and any call with `output_attentions=True`): the batch as given, with dense
  (length x length) masks, because attention weights are returned in that shape.

Both give the same outputs on real tokens as transformers' ModernBERT with a padded batch.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

try:
    from flash_attn import flash_attn_varlen_func
except ImportError:  # flash-attn is optional and GPU-only
    flash_attn_varlen_func = None

# ----------------------------------------------------------------------------------------------------------------
# Rotary position embeddings


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's angles, float32, shape positions.shape + (head_dim / 2,).

    ModernBERT's tables repeat these halves twice; keeping one half lets the rotation below skip a concatenation
    and a negation while computing exactly the same products. Computed on the fly: cheap, and no buffers that a
    meta-device load could leave uninitialised.
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float, device=positions.device) / head_dim
    angles = positions[..., None].float() * (1.0 / theta**exponents)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., tokens, head_dim) in float32, as ModernBERT does, and return it in x's dtype.

    `cos`/`sin` (tokens, head_dim / 2) broadcast over the leading dimensions, so queries and keys of every head
    rotate in one call. Same arithmetic as ModernBERT's x·cos + rotate_half(x)·sin. The result is contiguous in
    x's logical order: given (..., heads, tokens, head_dim), each head's tokens sit together, the layout the
    attention kernels read fastest.
    """
    first, second = x.float().chunk(2, dim=-1)
    rotated = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
    return rotated.to(x.dtype)


def rotary_for_both_layer_kinds(positions: torch.Tensor, config) -> dict:
    head_dim = config.hidden_size // config.num_attention_heads
    return {
        "global": rotary_tables(positions, head_dim, config.global_rope_theta),
        "local": rotary_tables(positions, head_dim, config.local_rope_theta),
    }


def sequence_starts(position_ids: torch.Tensor | None, first_in_row: torch.Tensor) -> torch.Tensor:
    """True where a sequence begins: at the first real token of a row, and wherever packed positions restart at 0."""
    if position_ids is None:
        return first_in_row
    return first_in_row | (position_ids == 0)


# ----------------------------------------------------------------------------------------------------------------
# Unpadded layout: SDPA (CPU and GPU) and flash-attn 2


@dataclass
class UnpaddedLayout:
    """The real tokens of a (batch, length) input as one stream of `tokens`, and how they split into sequences."""

    batch: int
    length: int
    real_index: torch.Tensor | None  # (tokens,) flat index into batch*length of each real token; None: all real
    positions: torch.Tensor  # (tokens,) rotary position: the column, or the place in a packed sequence
    sequence_ids: torch.Tensor  # (tokens,) 0, 0, ..., 1, 1, ...: the sequence each token belongs to
    sequence_lengths: torch.Tensor  # (sequences,)
    cu_seqlens: torch.Tensor  # (sequences + 1,) int32 offsets of the sequences in the stream (flash-attn)
    max_length: int
    window: int  # local half-width: |i - j| <= window
    rotary: dict = field(default_factory=dict)  # "global" / "local" -> (cos, sin), each (tokens, head_dim / 2)
    _cache: dict = field(default_factory=dict)  # masks and indices, built on first use and reused by every layer

    @classmethod
    def build(cls, attention_mask, position_ids, batch: int, length: int, device, config) -> "UnpaddedLayout":
        columns = torch.arange(length, device=device).expand(batch, length)
        if attention_mask is None or bool(attention_mask.all()):
            real_index = None
            real = torch.ones(batch, length, dtype=torch.bool, device=device)
        else:
            real = attention_mask.bool()
            real_index = real.flatten().nonzero().squeeze(-1)
        positions = columns if position_ids is None else position_ids.expand(batch, length)
        # The first real token of each row: its running count of real tokens is 1.
        first_in_row = real & (real.cumsum(dim=1) == 1)
        starts = sequence_starts(None if position_ids is None else positions, first_in_row)
        if real_index is None:
            positions, starts = positions.flatten(), starts.flatten()
        else:
            positions, starts = positions.flatten()[real_index], starts.flatten()[real_index]
        sequence_ids = starts.cumsum(0) - 1
        sequence_lengths = torch.bincount(sequence_ids)
        cu_seqlens = F.pad(sequence_lengths.cumsum(0, dtype=torch.int32), (1, 0))
        return cls(
            batch=batch,
            length=length,
            real_index=real_index,
            positions=positions,
            sequence_ids=sequence_ids,
            sequence_lengths=sequence_lengths,
            cu_seqlens=cu_seqlens,
            max_length=int(sequence_lengths.max()),
            window=config.sliding_window,
            rotary=rotary_for_both_layer_kinds(positions, config),
        )

    @property
    def tokens(self) -> int:
        return self.positions.shape[0]

    @property
    def token_shape(self) -> tuple:
        return (self.tokens,)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """(batch, length, ...) -> (tokens, ...): the real tokens only."""
        flat = padded.reshape(self.batch * self.length, *padded.shape[2:])
        return flat if self.real_index is None else flat[self.real_index]

    def pad(self, tokens: torch.Tensor) -> torch.Tensor:
        """(tokens, ...) -> (batch, length, ...), zeros at padding positions."""
        if self.real_index is None:
            return tokens.reshape(self.batch, self.length, *tokens.shape[1:])
        padded = tokens.new_zeros(self.batch * self.length, *tokens.shape[1:])
        padded = padded.index_copy(0, self.real_index, tokens)
        return padded.view(self.batch, self.length, *tokens.shape[1:])

    def recompute_in_backward(self, window: int | None, implementation: str) -> bool:
        """Banded attention saves its overlapping key and value neighbourhoods (3x the keys and values) for the
        backward pass; recomputing the layer's rotation and attention there instead costs a few percent of the
        layer's time and keeps training memory below the reference's."""
        return window is not None and implementation != "flash_attention_2"

    def attend(self, query, key, value, window: int | None, dropout: float, implementation: str):
        """softmax(QKᵀ/√d)V within each sequence; `window` limits keys to ±window positions (local layers).

        query, key, value: (heads, tokens, head_dim). Returns ((tokens, heads, head_dim), None).
        """
        if implementation == "flash_attention_2":
            return self.flash_attention(query, key, value, window, dropout), None
        if window is not None:
            return self.banded_attention(query, key, value, dropout), None
        return self.sequence_attention(query, key, value, dropout), None

    def flash_attention(self, query, key, value, window: int | None, dropout: float):
        if flash_attn_varlen_func is None:
            raise ImportError("attn_implementation='flash_attention_2' needs the flash-attn package (pip install flash-attn)")
        query, key, value = (tensor.transpose(0, 1).contiguous() for tensor in (query, key, value))  # (tokens, heads, head_dim)
        return flash_attn_varlen_func(
            query, key, value, self.cu_seqlens, self.cu_seqlens, self.max_length, self.max_length,
            dropout_p=dropout,
            window_size=(window, window) if window is not None else (-1, -1),
        )

    def sequence_attention(self, query, key, value, dropout: float):
        """Global attention within each sequence, through SDPA on a (sequences, heads, max_length) batch.

        When every sequence has the same length the stream already is that batch (a view, no mask); otherwise
        the tokens are scattered into a padded batch for this call only, with padded keys masked.
        """
        heads, head_dim = query.shape[0], query.shape[2]
        sequences, slots = self.sequence_lengths.shape[0], self.max_length
        index, mask = (None, None) if self.tokens == sequences * slots else self.sequence_batch_index()

        def to_batch(tokens):  # (heads, tokens, head_dim) -> (sequences, heads, slots, head_dim)
            if index is not None:
                tokens = tokens.new_zeros(heads, sequences * slots, head_dim).index_copy(1, index, tokens)
            return tokens.view(heads, sequences, slots, head_dim).transpose(0, 1)

        output = F.scaled_dot_product_attention(to_batch(query), to_batch(key), to_batch(value), attn_mask=mask, dropout_p=dropout)
        output = output.transpose(1, 2).reshape(sequences * slots, heads, head_dim)
        return output if index is None else output[index]

    def sequence_batch_index(self):
        """Where each token sits in the (sequences, max_length) batch, and the (sequences, 1, 1, max_length) key mask."""
        if "sequence_batch" not in self._cache:
            offsets = torch.arange(self.tokens, device=self.positions.device) - self.cu_seqlens[self.sequence_ids]
            index = self.sequence_ids * self.max_length + offsets
            slots = torch.arange(self.max_length, device=self.positions.device)
            mask = (slots[None, :] < self.sequence_lengths[:, None])[:, None, None, :]
            self._cache["sequence_batch"] = (index, mask)
        return self._cache["sequence_batch"]

    def banded_attention(self, query, key, value, dropout: float):
        """Local attention in O(tokens x window): each block of queries attends to its key neighbourhood.

        The stream is cut into blocks of `window` queries; block b sees its own keys and those of blocks b - 1
        and b + 1, which hold every key within ±window of its queries. A mask keeps, of those, the keys of the
        same sequence within ±window positions: exactly the set the full masked computation keeps, since keys
        further away in the stream are further away in position too (a sequence's positions rise by at least
        one per token). Scores computed: 3·window per query, where the band has 2·window + 1.
        """
        heads, head_dim = query.shape[0], query.shape[2]
        blocks, block = self.band_blocks()
        tail = blocks * block - self.tokens
        queries = F.pad(query, (0, 0, 0, tail)).view(heads, blocks, block, head_dim).transpose(0, 1)
        output = F.scaled_dot_product_attention(
            queries, self.neighbourhoods(key, dim=1).transpose(0, 1), self.neighbourhoods(value, dim=1).transpose(0, 1),
            attn_mask=self.band_mask(query.dtype), dropout_p=dropout,
        )
        return output.transpose(1, 2).reshape(blocks * block, heads, head_dim)[: self.tokens]

    def band_blocks(self) -> tuple[int, int]:
        block = max(self.window, 1)
        return -(-self.tokens // block), block

    def neighbourhoods(self, tokens: torch.Tensor, dim: int, fill=0) -> torch.Tensor:
        """Tokens along `dim` -> (blocks, 3·block) there: each block's keys with the blocks either side.

        Built from three shifted views and one concatenation, whose backward is three cheap slices (the
        overlapping-window `unfold` has a slow backward on CPU)."""
        blocks, block = self.band_blocks()
        pad = [0, 0] * (tokens.dim() - 1 - dim) + [block, block * (blocks + 1) - self.tokens]
        padded = F.pad(tokens, pad, value=fill)
        padded = padded.unflatten(dim, (blocks + 2, block))
        before, own, after = (padded.narrow(dim, start, blocks) for start in (0, 1, 2))
        return torch.cat((before, own, after), dim=dim + 1)

    def band_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """(blocks, 1, block, 3·block) additive mask in `dtype`: 0 for keys of the same sequence within ±window
        positions, -inf elsewhere. Additive, not boolean, so SDPA does not convert it again in every layer.

        Queries of the block-filling tail may see every key (their output is dropped): a row with no allowed
        key would give NaN, and NaN leaks into real tokens through the backward pass.
        """
        if ("band", dtype) not in self._cache:
            blocks, block = self.band_blocks()
            tail = blocks * block - self.tokens
            sequence_ids, positions = self.sequence_ids.int(), self.positions.int()  # int32: half the traffic of int64
            query_sequence = F.pad(sequence_ids, (0, tail), value=-1).view(blocks, block, 1)
            query_position = F.pad(positions, (0, tail)).view(blocks, block, 1)
            key_sequence = self.neighbourhoods(sequence_ids, dim=0, fill=-1)[:, None, :]
            key_position = self.neighbourhoods(positions, dim=0)[:, None, :]
            allowed = (query_sequence == key_sequence) & ((query_position - key_position).abs() <= self.window)
            allowed |= query_sequence < 0
            blocked = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))
            self._cache["band", dtype] = blocked[:, None]
        return self._cache["band", dtype]


# ----------------------------------------------------------------------------------------------------------------
# Padded layout: eager attention with dense masks (returns the attention weights)


@dataclass
class PaddedLayout:
    """The batch as given, (batch, length), with dense boolean masks (True = may attend)."""

    batch: int
    length: int
    global_mask: torch.Tensor | None  # (batch, 1, length, length); None: every token sees every token
    local_mask: torch.Tensor  # (batch or 1, 1, length, length)
    rotary: dict = field(default_factory=dict)  # "global" / "local" -> (cos, sin), each (batch or 1, 1, length, head_dim / 2)

    @classmethod
    def build(cls, attention_mask, position_ids, batch: int, length: int, device, config) -> "PaddedLayout":
        """A padded query row may see every key: its output is never used, and a row with no allowed key would
        give NaN that then leaks through 0 * NaN into real tokens."""
        columns = torch.arange(length, device=device)[None]
        positions = columns if position_ids is None else position_ids
        near = (positions[:, None, :, None] - positions[:, None, None, :]).abs() <= config.sliding_window
        real = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        if real is None and position_ids is None:
            return cls(batch, length, None, near, rotary_for_both_layer_kinds(positions[:, None], config))
        if real is None:
            real = torch.ones(batch, length, dtype=torch.bool, device=device)
        first_in_row = real & (real.cumsum(dim=1) == 1)
        sequence_ids = sequence_starts(position_ids, first_in_row).cumsum(dim=1)
        same_sequence = (sequence_ids[:, None, :, None] == sequence_ids[:, None, None, :]) & real[:, None, None, :]
        padded_query = ~real[:, None, :, None]
        global_mask = same_sequence | padded_query
        local_mask = (same_sequence & near) | padded_query
        return cls(batch, length, global_mask, local_mask, rotary_for_both_layer_kinds(positions[:, None], config))

    @property
    def token_shape(self) -> tuple:
        return (self.batch, self.length)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        return padded

    def pad(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def recompute_in_backward(self, window: int | None, implementation: str) -> bool:
        return False

    def attend(self, query, key, value, window: int | None, dropout: float, implementation: str):
        """query, key, value: (batch, heads, length, head_dim). Returns the output (batch, length, heads, head_dim)
        and the weights (batch, heads, length, length)."""
        mask = self.global_mask if window is None else self.local_mask
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = F.dropout(weights, p=dropout, training=dropout > 0)
        return torch.matmul(weights, value).transpose(1, 2), weights
