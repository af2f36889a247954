"""Attention for NucEL: where the real tokens are, rotary tables, and the attention backends.

This file is copied next to every saved checkpoint with `modeling_nucel.py` and, like it, needs only torch
(`flash_attn` is optional and imported under a guard).

Two token layouts, computed once per forward pass and shared by every layer:

- `UnpaddedLayout` (SDPA, FlexAttention and flash-attn 2): the real tokens of the batch in one flat stream,
  sequence after sequence, so linear layers never touch padding. A sequence is a row of the batch, or one of
  several sequences packed into a row (its `position_ids` restart at 0). Global layers attend within each
  sequence; local layers attend within ±window, in O(tokens x window) time and memory: SDPA over blocks of the
  stream (banded attention), FlexAttention with a block-sparse mask built directly from the sequence layout.
- `PaddedLayout` (eager, any call with `output_attentions=True`, and `torch.export`): the batch as given, with
  dense (length x length) masks, because attention weights are returned in that shape and because its shapes do
  not depend on the data.

Both give the same outputs on real tokens as transformers' ModernBERT with a padded batch.
"""

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

try:
    from flash_attn import flash_attn_varlen_func
except ImportError:  # flash-attn is optional and GPU-only
    flash_attn_varlen_func = None

try:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # torch < 2.5
    BlockMask = flex_attention = None

# FlexAttention's tile: the block mask says, per 128 queries, which 128-key tiles to visit.
FLEX_BLOCK = 128
# Block masks of batches whose rows are all real and unpacked depend only on the shape: built once per shape.
_UNIFORM_BLOCK_MASKS: dict = {}
_compiled_flex_attention = None
_warned: set = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


def run_flex_attention(query, key, value, block_mask):
    """FlexAttention, compiled once per process (uncompiled it is a slow reference implementation); inside a
    model that is itself being compiled, the plain function, which the outer compilation traces."""
    global _compiled_flex_attention
    if flex_attention is None:
        raise ImportError(
            f"attn_implementation='flex_attention' needs torch >= 2.5 (this is torch {torch.__version__})"
        )
    if torch.compiler.is_compiling():
        return flex_attention(query, key, value, block_mask=block_mask)
    if _compiled_flex_attention is None:
        _compiled_flex_attention = torch.compile(flex_attention)
    return _compiled_flex_attention(query, key, value, block_mask=block_mask)


def flex_block_mask(sequence_ids: torch.Tensor, positions: torch.Tensor, cu_seqlens: torch.Tensor, window: int | None):
    """The block mask of attention within each sequence of a token stream (and within ±window positions).

    Built from the layout, not by evaluating the mask on every (query, key) pair: the keys a 128-query tile may see
    lie in one contiguous run of tiles, from the start of its first sequence to the end of its last (global), cut
    to ±window stream positions (local; a sequence's positions rise by at least one per token, so keys within
    ±window positions are within ±window places of the stream). A tile pair that lies inside one sequence and
    within the window everywhere is "full" (no mask evaluated); the others evaluate the exact mask.
    """
    tokens = sequence_ids.shape[0]
    blocks = -(-tokens // FLEX_BLOCK)
    first_token = torch.arange(blocks, device=sequence_ids.device) * FLEX_BLOCK
    last_token = (first_token + FLEX_BLOCK).clamp(max=tokens) - 1
    first_sequence, last_sequence = sequence_ids[first_token], sequence_ids[last_token]
    lowest = torch.div(cu_seqlens[first_sequence], FLEX_BLOCK, rounding_mode="floor")
    highest = torch.div(cu_seqlens[last_sequence + 1] - 1, FLEX_BLOCK, rounding_mode="floor")
    if window is not None:
        lowest = torch.maximum(
            lowest, torch.div((first_token - window).clamp(min=0), FLEX_BLOCK, rounding_mode="floor")
        )
        highest = torch.minimum(
            highest, torch.div((last_token + window).clamp(max=tokens - 1), FLEX_BLOCK, rounding_mode="floor")
        )
    candidates = lowest[:, None] + torch.arange(int((highest - lowest).max()) + 1, device=sequence_ids.device)
    visited = candidates <= highest[:, None]
    candidates = candidates.clamp(max=blocks - 1)

    # Full tiles: query and key tiles each inside one sequence, the same one, every pair within the window.
    single = (first_sequence == last_sequence) & (last_token - first_token + 1 == FLEX_BLOCK)
    first_position, last_position = positions[first_token], positions[last_token]
    full = visited & single[:, None] & single[candidates] & (first_sequence[:, None] == first_sequence[candidates])
    if window is not None:
        reach = torch.maximum(
            last_position[:, None] - first_position[candidates], last_position[candidates] - first_position[:, None]
        )
        full &= reach <= window

    def tiles(selected):  # (count, indices) per query tile, selected tiles first, one column per key tile
        order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)
        indices = F.pad(torch.gather(candidates, 1, order), (0, blocks - candidates.shape[1]))
        return selected.sum(1).to(torch.int32)[None, None], indices.to(torch.int32)[None, None]

    padded_sequence = F.pad(sequence_ids, (0, blocks * FLEX_BLOCK - tokens), value=-1)  # tail slots: no sequence
    padded_positions = F.pad(positions, (0, blocks * FLEX_BLOCK - tokens))

    def mask_mod(batch, head, query_index, key_index):
        allowed = padded_sequence[query_index] == padded_sequence[key_index]
        if window is not None:
            allowed = allowed & ((padded_positions[query_index] - padded_positions[key_index]).abs() <= window)
        return allowed

    partial_count, partial_indices = tiles(visited & ~full)
    full_count, full_indices = tiles(full)
    return BlockMask.from_kv_blocks(
        partial_count,
        partial_indices,
        full_count,
        full_indices,
        BLOCK_SIZE=FLEX_BLOCK,
        mask_mod=mask_mod,
        seq_lengths=(tokens, tokens),
    )


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
    def build(
        cls, attention_mask, position_ids, batch: int, length: int, device, config, dtype=torch.float32
    ) -> "UnpaddedLayout":
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
        layout = cls(
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
        layout.prepare(config._attn_implementation, dtype, uniform_rows=real_index is None and position_ids is None)
        return layout

    def prepare(self, implementation: str, dtype: torch.dtype, uniform_rows: bool) -> None:
        """Build what the layers will need once, here, outside them: a compiled layer stack then holds no data-
        dependent work and no cache writes (which activation checkpointing cannot replay). `dtype`: the model's;
        the SDPA band mask is built in the dtype attention runs in (autocast's, where it is on)."""
        if implementation == "flex_attention":
            for window in (None, self.window):
                self.flex_mask(
                    window,
                    cache_key=(self.batch, self.length, window, str(self.positions.device)) if uniform_rows else None,
                )
        elif implementation == "sdpa":
            device_type = self.positions.device.type
            self.band_mask(torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else dtype)
            if self.tokens != self.sequence_lengths.shape[0] * self.max_length:
                self.sequence_batch_index()

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
        return window is not None and implementation not in ("flash_attention_2", "flex_attention")

    def attend(self, query, key, value, window: int | None, dropout: float, implementation: str):
        """softmax(QKᵀ/√d)V within each sequence; `window` limits keys to ±window positions (local layers).

        query, key, value: (heads, tokens, head_dim). Returns ((tokens, heads, head_dim), None).
        """
        if implementation == "flash_attention_2":
            return self.flash_attention(query, key, value, window, dropout), None
        if implementation == "flex_attention":
            if not (query.requires_grad and query.device.type == "cpu"):
                return self.flex(query, key, value, window, dropout), None
            warn_once(
                "FlexAttention has no backward pass on CPU: attention that needs gradients runs on the "
                "SDPA path there (same outputs); flex_attention trains on CUDA."
            )
        if window is not None:
            return self.banded_attention(query, key, value, dropout), None
        return self.sequence_attention(query, key, value, dropout), None

    def flash_attention(self, query, key, value, window: int | None, dropout: float):
        if flash_attn_varlen_func is None:
            raise ImportError(
                "attn_implementation='flash_attention_2' needs the flash-attn package (pip install flash-attn)"
            )
        # flash-attn computes in fp16/bf16 only: fp32 activations (fp32 weights) run in autocast's dtype.
        dtype = query.dtype
        if dtype not in (torch.float16, torch.bfloat16):
            if not torch.is_autocast_enabled(query.device.type):
                raise ValueError(
                    "flash_attention_2 runs in float16/bfloat16: load the model in bf16, run it under "
                    "torch.autocast, or choose attn_implementation='sdpa' or 'flex_attention'"
                )
            dtype = torch.get_autocast_dtype(query.device.type)
        query, key, value = (
            tensor.transpose(0, 1).to(dtype).contiguous() for tensor in (query, key, value)
        )  # (tokens, heads, head_dim)
        return flash_attn_varlen_func(
            query,
            key,
            value,
            self.cu_seqlens,
            self.cu_seqlens,
            self.max_length,
            self.max_length,
            dropout_p=dropout,
            window_size=(window, window) if window is not None else (-1, -1),
        )

    def flex(self, query, key, value, window: int | None, dropout: float):
        if dropout:
            raise ValueError("attn_implementation='flex_attention' does not support attention dropout; use 'sdpa'")
        # Contiguous inputs: traced inside a compiled layer, Inductor's CPU flex kernel misreads the strided view
        # that `value` is (differences of 1e-2 from layer 1 on, torch 2.13); no copy where already contiguous.
        query, key, value = (tensor[None].contiguous() for tensor in (query, key, value))
        output = run_flex_attention(query, key, value, self.flex_mask(window))
        return output[0].transpose(0, 1)  # (tokens, heads, head_dim)

    def flex_mask(self, window: int | None, cache_key: tuple | None = None):
        """The FlexAttention block mask of global (`window` None) or local layers, built once per forward pass and,
        for batches whose mask depends only on their shape (`cache_key`), once per shape."""
        if ("flex", window) not in self._cache:
            if cache_key is not None and cache_key in _UNIFORM_BLOCK_MASKS:
                mask = _UNIFORM_BLOCK_MASKS[cache_key]
            else:
                mask = flex_block_mask(self.sequence_ids, self.positions, self.cu_seqlens, window)
                if cache_key is not None:
                    if len(_UNIFORM_BLOCK_MASKS) >= 32:
                        _UNIFORM_BLOCK_MASKS.clear()
                    _UNIFORM_BLOCK_MASKS[cache_key] = mask
            self._cache["flex", window] = mask
        return self._cache["flex", window]

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

        output = F.scaled_dot_product_attention(
            to_batch(query), to_batch(key), to_batch(value), attn_mask=mask, dropout_p=dropout
        )
        output = output.transpose(1, 2).reshape(sequences * slots, heads, head_dim)
        return output if index is None else output[index]

    def sequence_batch_index(self):
        """Where each token sits in the (sequences, max_length) batch, and the (sequences, 1, 1, max_length) key
        mask."""
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
            queries,
            self.neighbourhoods(key, dim=1).transpose(0, 1),
            self.neighbourhoods(value, dim=1).transpose(0, 1),
            attn_mask=self.band_mask(query.dtype),
            dropout_p=dropout,
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
            blocked = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
                ~allowed, float("-inf")
            )
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
    rotary: dict = field(
        default_factory=dict
    )  # "global" / "local" -> (cos, sin), each (batch or 1, 1, length, head_dim / 2)

    @classmethod
    def build(cls, attention_mask, position_ids, batch: int, length: int, device, config, dtype=None) -> "PaddedLayout":
        """A padded query row may see every key: its output is never used, and a row with no allowed key would
        give NaN that then leaks through 0 * NaN into real tokens."""
        columns = torch.arange(length, device=device)[None]
        positions = columns if position_ids is None else position_ids
        near = (positions[:, None, :, None] - positions[:, None, None, :]).abs() <= config.sliding_window
        # Under torch.export the masks are always built: testing whether the batch has padding depends on the data.
        exporting = torch.compiler.is_exporting()
        no_padding = attention_mask is None or (not exporting and bool(attention_mask.all()))
        real = None if no_padding else attention_mask.bool()
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
        and the weights (batch, heads, length, length); SDPA (the exported model's path) returns no weights."""
        mask = self.global_mask if window is None else self.local_mask
        if implementation != "eager":
            return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout).transpose(
                1, 2
            ), None
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = F.dropout(weights, p=dropout, training=dropout > 0)
        return torch.matmul(weights, value).transpose(1, 2), weights
