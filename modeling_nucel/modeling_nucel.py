"""NucEL models: ModernBERT-style encoders over single nucleotides, pre-trained by replaced token detection.

This file is copied next to every saved checkpoint and loaded by `trust_remote_code=True`. It depends only on
torch and the public parts of transformers; `flash_attn` is optional. Parameter names and semantics follow
transformers' ModernBERT exactly, so weights move between the two without renaming.

Attention backends (`config._attn_implementation`, switchable with `model.set_attn_implementation`): "sdpa"
(default, CPU and GPU), "flex_attention" (PyTorch's FlexAttention with a block-sparse mask, compiled by Triton on
GPU and Inductor on CPU; needs torch >= 2.5, trains on CUDA), "eager" (also used for any call with
`output_attentions=True`, since fused kernels cannot return weights) and "flash_attention_2" (GPU, flash-attn 2
installed; variable-length kernel with `window_size` for local layers). SDPA, flex and flash-attn run on the real
tokens only, with local layers in O(length x window) (see `attention_nucel.py`). All give the same outputs on real
tokens; padding is never attended, nor are other sequences packed into the same row. Under `torch.export` the
model takes the padded path with dense masks, whose shapes do not depend on the data.
"""

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput, logging

from .attention_nucel import PaddedLayout, UnpaddedLayout, apply_rotary
from .configuration_nucel import BASE_IDS, NucELConfig

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100
NON_BASE_LOGIT_BIAS = -1e4


# ----------------------------------------------------------------------------------------------------------------
# Modules (names as in transformers' ModernBERT)


class NucELEmbeddings(nn.Module):
    def __init__(self, config: NucELConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.tok_embeddings(input_ids)
        return self.drop(self.norm(inputs_embeds))


class NucELMLP(nn.Module):
    """GeGLU feed-forward block."""

    def __init__(self, config: NucELConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.act = ACT2FN[config.hidden_activation]
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, hidden_states):
        value, gate = self.Wi(hidden_states).chunk(2, dim=-1)
        return self.Wo(self.drop(self.act(value) * gate))


class NucELAttention(nn.Module):
    def __init__(self, config: NucELConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.is_global = config.is_global_layer(layer_idx)
        self.window = None if self.is_global else config.sliding_window
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.out_drop = nn.Dropout(config.attention_dropout) if config.attention_dropout > 0 else nn.Identity()

    def forward(self, hidden_states, layout, output_attentions: bool = False):
        """hidden_states: `layout.token_shape` + (hidden,), or any shape that reshapes to it."""
        shape = hidden_states.shape
        qkv = self.Wqkv(hidden_states.reshape(*layout.token_shape, shape[-1]))
        # (3, [batch,] heads, tokens, head_dim): rotating queries and keys together lays each head's tokens out
        # contiguously
        qkv = qkv.unflatten(-1, (3, self.num_heads, self.head_dim)).movedim(-3, 0).transpose(-2, -3)
        implementation = "eager" if output_attentions else self.config._attn_implementation
        if torch.is_grad_enabled() and layout.recompute_in_backward(self.window, implementation):
            output, weights = checkpoint(self.attend, qkv, layout, implementation, use_reentrant=False)
        else:
            output, weights = self.attend(qkv, layout, implementation)
        return self.out_drop(self.Wo(output.flatten(-2))).view(shape), weights

    def attend(self, qkv, layout, implementation: str):
        """Rotate queries and keys, then attend as the layout does: output (tokens..., heads, head_dim), weights."""
        cos, sin = layout.rotary["global" if self.is_global else "local"]
        query_key = apply_rotary(qkv[:2], cos, sin)
        dropout = self.config.attention_dropout if self.training else 0.0
        return layout.attend(query_key[0], query_key[1], qkv[2], self.window, dropout, implementation)


class NucELEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm block; the first layer takes the (already normalised) embeddings without another norm.
    `model.gradient_checkpointing_enable()` makes it recompute its activations in the backward pass."""

    def __init__(self, config: NucELConfig, layer_idx: int):
        super().__init__()
        if layer_idx == 0:
            self.attn_norm = nn.Identity()
        else:
            self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.attn = NucELAttention(config, layer_idx)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.mlp = NucELMLP(config)

    def forward(self, hidden_states, layout, output_attentions: bool = False):
        attn_output, weights = self.attn(self.attn_norm(hidden_states), layout, output_attentions)
        hidden_states = hidden_states + attn_output
        hidden_states = hidden_states + self.mlp(self.mlp_norm(hidden_states))
        return hidden_states, weights


class NucELPredictionHead(nn.Module):
    """Dense -> activation -> LayerNorm, ModernBERT's head under the MLM decoder and the classifiers."""

    def __init__(self, config: NucELConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = ACT2FN[config.classifier_activation]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def forward(self, hidden_states):
        return self.norm(self.act(self.dense(hidden_states)))


# ----------------------------------------------------------------------------------------------------------------
# Pre-trained model base


class NucELPreTrainedModel(PreTrainedModel):
    config_class = NucELConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["NucELEmbeddings", "NucELEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True  # transformers 5.x spelling
    _supports_flash_attn_2 = True  # transformers 4.x spelling
    _supports_flex_attn = True

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """Every layer reads `config._attn_implementation` at call time, so switching it switches the computation
        (transformers' source-reading heuristic cannot see that and would refuse)."""
        return True

    def _init_weights(self, module):
        """ModernBERT's initialisation: truncated normals, output projections scaled down with depth, zero biases."""
        std = self.config.initializer_range
        cutoff = self.config.initializer_cutoff_factor or 3.0
        out_std = std / math.sqrt(2.0 * self.config.num_hidden_layers)

        def truncated_normal(linear_or_embedding, scale):
            nn.init.trunc_normal_(linear_or_embedding.weight, mean=0.0, std=scale, a=-cutoff * scale, b=cutoff * scale)

        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NucELEmbeddings) and module.tok_embeddings is not None:  # None: a tied generator's
            truncated_normal(module.tok_embeddings, std)
        elif isinstance(module, NucELAttention):
            truncated_normal(module.Wqkv, std)
            truncated_normal(module.Wo, out_std)
        elif isinstance(module, NucELMLP):
            truncated_normal(module.Wi, std)
            truncated_normal(module.Wo, out_std)
        elif isinstance(module, NucELPredictionHead):
            truncated_normal(module.dense, out_std)
        elif isinstance(module, NucELGenerator):
            truncated_normal(module.decoder, out_std)
        elif isinstance(module, NucELForPreTraining):
            truncated_normal(module.rtd_classifier, out_std)
            if module.embedding_projection is not None:  # keeps the scale of the table it projects
                truncated_normal(module.embedding_projection, module.embedding_projection.in_features**-0.5)
        elif isinstance(module, NucELForReplacedTokenDetection):
            truncated_normal(module.rtd_classifier, out_std)
        elif isinstance(module, (NucELForSequenceClassification, NucELForTokenClassification)):
            truncated_normal(module.classifier, self.config.hidden_size**-0.5)

    def _initialize_weights(self, module, is_custom_code: bool = False):
        """Never take the "custom code" shortcut of transformers 5.x: it skips every module without parameters
        of its own, which are exactly the parents that `_init_weights` initialises their Linear layers from, so
        new heads stayed uninitialised memory (NaN) after `from_pretrained`. `_init_weights` writes only through
        `torch.nn.init`, which transformers guards, so loaded weights are still never overwritten."""
        super()._initialize_weights(module)

    def compile_layers(self, **options) -> None:
        """`torch.compile` each encoder layer as one graph: `fullgraph=True`, so a graph break is an error rather
        than a silent slowdown, and dynamic shapes, since the number of real tokens changes from batch to batch.
        The token layout is built eagerly, once per forward pass, outside the compiled layers."""
        # Every layer of every model shares one code object, and each kind of call is a graph of its own there:
        # global or local, the first layer, the model's width, training or inference, padded batches or not. Allow
        # enough of them (torch's default is 8), or fullgraph turns the next one into an error.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        for module in self.modules():
            if isinstance(module, NucELEncoderLayer):
                module.compile(**{"fullgraph": True, "dynamic": True, **options})

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights, config and the code files, with the complete `auto_map` so that every Auto class (not
        only this model's) resolves in the saved folder with `trust_remote_code=True`."""
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Encoder


class NucELModel(NucELPreTrainedModel):
    """The bare encoder ("nucel-93m" is this model): per-token hidden states."""

    _auto_class = "AutoModel"  # marks the class as remote code: saving copies the code files

    def __init__(self, config: NucELConfig):
        super().__init__(config)
        self.embeddings = NucELEmbeddings(config)
        self.layers = nn.ModuleList([NucELEncoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.tok_embeddings = value

    def attention_context(
        self, attention_mask, batch: int, length: int, device, position_ids=None, padded: bool = False
    ):
        """Where the real tokens are and how they attend, built once per forward pass for every layer.

        Unpadded (SDPA, flex, flash-attn 2): the layers see only the real tokens, as one (tokens, hidden) stream.
        Padded (`padded=True`: eager, and torch.export): the layers see (batch, length, hidden) with dense masks.
        `position_ids` (batch, length), optional: packed sequences, each starting again at position 0.
        """
        layout = PaddedLayout if padded else UnpaddedLayout
        return layout.build(attention_mask, position_ids, batch, length, device, self.config, self.dtype)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs,
    ):
        """`position_ids` (optional) packs several sequences into one row: positions restart at 0 where a new
        sequence begins, and no sequence attends to another (see `nucel.training.packing`)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_attentions and self.config._attn_implementation != "eager":
            logger.warning_once(
                "output_attentions=True: attention is computed on the eager path for this call, because the "
                f"{self.config._attn_implementation} kernel cannot return attention weights."
            )

        if input_ids is not None:
            self.warn_if_padding_and_no_attention_mask(input_ids, attention_mask)
        batch, length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        device = (input_ids if input_ids is not None else inputs_embeds).device
        padded = output_attentions or self.config._attn_implementation == "eager" or torch.compiler.is_exporting()
        layout = self.attention_context(attention_mask, batch, length, device, position_ids, padded)
        hidden_states = self.embeddings(
            input_ids=None if input_ids is None else layout.unpad(input_ids),
            inputs_embeds=None if inputs_embeds is None else layout.unpad(inputs_embeds),
        )

        all_hidden_states = (layout.pad(hidden_states),) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, layout, output_attentions)
            if output_hidden_states:
                all_hidden_states += (layout.pad(hidden_states),)
            if output_attentions:
                all_attentions += (weights,)
        hidden_states = layout.pad(self.final_norm(hidden_states))

        if not return_dict:
            return tuple(v for v in (hidden_states, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


def mask_to_bases(logits: torch.Tensor) -> torch.Tensor:
    """Logits with every token but A, C, G, T set to -inf."""
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    allowed[list(BASE_IDS)] = True
    return logits.masked_fill(~allowed, float("-inf"))


# ----------------------------------------------------------------------------------------------------------------
# Masked language model (the RTD generator; also the `--objective mlm` baseline)


class NucELGenerator(NucELPreTrainedModel):
    """Encoder + MLM head (ModernBertForMaskedLM's layout). With `config.restrict_to_bases`, only A/C/G/T are scored."""

    _auto_class = "AutoModelForMaskedLM"  # marks the class as remote code: saving copies the code files

    def __init__(self, config: NucELConfig):
        super().__init__(config)
        self.model = NucELModel(config)
        self.head = NucELPredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.post_init()
        if config.restrict_to_bases and config.decoder_bias:
            # Non-base logits are masked in our forward, so they are never trained; a very negative bias makes
            # native ModernBertForMaskedLM (the Hub widget, which runs no custom code) give them ~0 probability too.
            # Set after post_init, whose generic rule zeroes biases; a checkpoint load overwrites it as usual.
            with torch.no_grad():
                self.decoder.bias.fill_(NON_BASE_LOGIT_BIAS)
                self.decoder.bias[list(BASE_IDS)] = 0.0

    def get_output_embeddings(self):
        return self.decoder

    def set_output_embeddings(self, new_embeddings):
        self.decoder = new_embeddings

    def logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Scores of every vocabulary id. With `restrict_to_bases` the non-base ids score NON_BASE_LOGIT_BIAS plus
        their (untrained) decoder row: finite, ~0 probability, and exactly what native ModernBertForMaskedLM computes
        from the same folder, since the restriction lives in the decoder bias (set at initialisation; never trained,
        its ids having no probability to learn from). Without a bias the value is set here."""
        logits = self.decoder(self.head(hidden_states))
        if self.config.restrict_to_bases and self.decoder.bias is None:
            allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            allowed[list(BASE_IDS)] = True
            return logits.masked_fill(~allowed, NON_BASE_LOGIT_BIAS)
        return logits

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        **kwargs,
    ):
        """`labels`: original ids at masked positions, -100 elsewhere; the loss is cross-entropy over those."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            position_ids=position_ids,
        )
        logits = self.logits(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE_INDEX)
        if not return_dict:
            rest = tuple(v for v in (outputs.hidden_states, outputs.attentions) if v is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + rest
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# ----------------------------------------------------------------------------------------------------------------
# Replaced token detection


@dataclass
class NucELForPreTrainingOutput(ModelOutput):
    """`loss` = `generator_loss` + discriminator_weight · `discriminator_loss`.

    `replaced_mask` (bool, batch × length) marks tokens the discriminator saw replaced: masked positions whose
    sampled base differs from the original (a sample equal to the original counts as original). The discriminator's
    loss is over the base tokens only: nothing else can be replaced. Without a generator (`replacement` "uniform")
    `generator_loss` and `generator_logits` are None.
    """

    loss: torch.FloatTensor | None = None
    generator_loss: torch.FloatTensor | None = None
    discriminator_loss: torch.FloatTensor | None = None
    generator_logits: torch.FloatTensor | None = None  # (number of masked tokens, vocab): masked positions only
    discriminator_logits: torch.FloatTensor | None = None  # (batch, length)
    masked_positions: torch.BoolTensor | None = None
    replaced_mask: torch.BoolTensor | None = None
    discriminator_input_ids: torch.LongTensor | None = None


def gumbel_max_sample(logits: torch.Tensor) -> torch.Tensor:
    """Draw one token per row from softmax(logits) by the Gumbel-max trick (no gradient flows through it)."""
    uniform = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-9, 1.0 - 1e-9)
    return (logits.float() - torch.log(-torch.log(uniform))).argmax(dim=-1)


def sample_replacements(
    generator_logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    excluded_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """One base per row from the generator: softmax(logits / temperature) over A, C, G, T, or over the `top_k` most
    likely of them (ties at the k-th kept). Never a special token, nor the row's `excluded_ids` (one id per row:
    ELECTRA's `disallow_correct` passes the original bases, so every draw is a real replacement)."""
    logits = mask_to_bases(generator_logits.float()) / temperature
    if excluded_ids is not None:
        logits = logits.scatter(-1, excluded_ids.unsqueeze(-1), float("-inf"))
    if top_k is not None:
        kth_largest = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    return gumbel_max_sample(logits)


def uniform_replacements(original_ids: torch.Tensor) -> torch.Tensor:
    """For each original base, another base drawn uniformly from the other three (the generator-free control)."""
    bases = torch.tensor(BASE_IDS, device=original_ids.device)
    index = (original_ids.unsqueeze(-1) == bases).long().argmax(-1)
    offset = torch.randint(1, len(BASE_IDS), original_ids.shape, device=original_ids.device)
    return bases[(index + offset) % len(BASE_IDS)]


def is_base(input_ids: torch.Tensor) -> torch.Tensor:
    return torch.isin(input_ids, torch.tensor(BASE_IDS, device=input_ids.device))


def embed_with(table: torch.Tensor | None, input_ids: torch.Tensor, padding_idx: int) -> dict:
    """An encoder's token inputs: the ids (its own table), or their rows of a computed `table`."""
    if table is None:
        return {"input_ids": input_ids}
    return {"inputs_embeds": F.embedding(input_ids, table, padding_idx=padding_idx)}


class NucELForPreTraining(NucELPreTrainedModel):
    """Generator and discriminator in one module, so one optimizer and one `accelerator.prepare` cover both.

    Input: `input_ids` already masked (the `[MASK]` token or kept bases at selected positions) and `labels` with
    the original ids at the selected positions (-100 elsewhere). The generator predicts the selected positions;
    its samples (Gumbel-max over A/C/G/T only, at `config.sampling_temperature` or the forward's
    `sampling_temperature`, from the `config.sampling_top_k` most likely bases, never the original with
    `config.disallow_correct`) replace them; the discriminator labels every base as original or replaced. With
    `config.replacement` "uniform" there is no generator: each selected base is replaced by one of the other three.

    `config.embedding_sharing`:
      "none": generator and discriminator each have their own token table (the author's code).
      "tied": ELECTRA's one table, the discriminator's, trained by both losses; the generator reads it through
          `embedding_projection` (discriminator width -> generator width) when it is narrower, and has none of its own.
      "gdes": DeBERTa-v3's gradient-disentangled sharing: the discriminator's table is the generator's (through
          `embedding_projection`, generator width -> discriminator width, when they differ) with its gradient stopped,
          plus the discriminator's own `tok_embeddings`, initialised to zero: only the generator's loss trains the
          generator's table.
    `discriminator_for_export`, `replaced_token_detector_for_export` and `generator_for_export` fold whatever is
    shared into plain NucEL models, whose own tables then hold exactly the embeddings used here.
    """

    _auto_class = "AutoModelForPreTraining"  # marks the class as remote code: saving copies the code files

    def __init__(self, config: NucELConfig):
        super().__init__(config)
        uses_generator = config.replacement == "generator"
        self.generator = NucELGenerator(config.generator_configuration()) if uses_generator else None
        self.model = NucELModel(config)
        self.rtd_head = NucELPredictionHead(config)
        self.rtd_classifier = nn.Linear(config.hidden_size, 1)
        self.embedding_projection = None
        if config.embedding_sharing != "none":
            generator_width, width = self.generator.config.hidden_size, config.hidden_size
            if generator_width != width:
                widths = (width, generator_width) if config.embedding_sharing == "tied" else (generator_width, width)
                self.embedding_projection = nn.Linear(*widths, bias=False)
            if config.embedding_sharing == "tied":
                self.generator.model.embeddings.tok_embeddings = None  # it reads the discriminator's
        self.post_init()
        if config.embedding_sharing == "gdes":
            # The discriminator's own table is the delta on top of the generator's: it starts at zero.
            nn.init.zeros_(self.model.embeddings.tok_embeddings.weight)

    def get_input_embeddings(self):
        return self.model.embeddings.tok_embeddings

    def shared_embedding_tables(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(generator's, discriminator's) token tables as computed from what they share; None for a network that
        reads its own `tok_embeddings` unchanged."""
        sharing = self.config.embedding_sharing
        project = self.embedding_projection if self.embedding_projection is not None else nn.Identity()
        if sharing == "tied":
            return project(self.model.embeddings.tok_embeddings.weight), None
        if sharing == "gdes":
            shared = project(self.generator.model.embeddings.tok_embeddings.weight.detach())
            return None, shared + self.model.embeddings.tok_embeddings.weight
        return None, None

    def forward(
        self,
        input_ids,
        labels,
        attention_mask=None,
        return_dict=None,
        position_ids=None,
        sampling_temperature=None,
        **kwargs,
    ):
        """`position_ids` (optional): packed rows, see `NucELModel.forward`. `sampling_temperature` (optional):
        this step's temperature (a schedule's), instead of `config.sampling_temperature`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        masked_positions = labels != IGNORE_INDEX
        original_ids = torch.where(masked_positions, labels, input_ids)
        masked_labels = labels[masked_positions]
        generator_table, discriminator_table = self.shared_embedding_tables()

        generator_loss = generator_logits = None
        if self.generator is None:
            sampled = uniform_replacements(masked_labels)
        else:
            generator_hidden = self.generator.model(
                **embed_with(generator_table, input_ids, self.config.pad_token_id),
                attention_mask=attention_mask,
                position_ids=position_ids,
            ).last_hidden_state
            # The MLM head runs on masked positions only: the other 85% of its work would be thrown away.
            generator_logits = self.generator.logits(generator_hidden[masked_positions])
            generator_loss = F.cross_entropy(generator_logits, masked_labels)
            with torch.no_grad():
                sampled = sample_replacements(
                    generator_logits.detach(),
                    self.config.sampling_temperature if sampling_temperature is None else sampling_temperature,
                    self.config.sampling_top_k,
                    excluded_ids=masked_labels if self.config.disallow_correct else None,
                )
        discriminator_input_ids = original_ids.masked_scatter(masked_positions, sampled)
        replaced_mask = discriminator_input_ids != original_ids

        discriminator_hidden = self.model(
            **embed_with(discriminator_table, discriminator_input_ids, self.config.pad_token_id),
            attention_mask=attention_mask,
            position_ids=position_ids,
        ).last_hidden_state
        discriminator_logits = self.rtd_classifier(self.rtd_head(discriminator_hidden)).squeeze(-1)
        # Only bases can be replaced: specials, [UNK] and padding would teach nothing but "never replaced".
        scored = attention_mask.bool() & is_base(original_ids)
        discriminator_loss = F.binary_cross_entropy_with_logits(
            discriminator_logits[scored], replaced_mask[scored].to(discriminator_logits.dtype)
        )
        loss = self.config.discriminator_weight * discriminator_loss
        if generator_loss is not None:
            loss = generator_loss + loss
        output = NucELForPreTrainingOutput(
            loss=loss,
            generator_loss=generator_loss,
            discriminator_loss=discriminator_loss,
            generator_logits=generator_logits,
            discriminator_logits=discriminator_logits,
            masked_positions=masked_positions,
            replaced_mask=replaced_mask,
            discriminator_input_ids=discriminator_input_ids,
        )
        return output if return_dict is not False else output.to_tuple()

    def discriminator_for_export(self) -> "NucELModel":
        """The discriminator as a plain encoder (no generator, no pre-training settings in its config), its token
        table the one it computes with."""
        state = self.model.state_dict()
        _, table = self.shared_embedding_tables()
        if table is not None:
            state["embeddings.tok_embeddings.weight"] = table
        return self._standalone(NucELModel(self.config.encoder_configuration()), state)

    def replaced_token_detector_for_export(self) -> "NucELForReplacedTokenDetection":
        """The discriminator with its RTD head, as `discriminator_for_export` folds its table."""
        state = {f"model.{name}": value for name, value in self.discriminator_for_export().state_dict().items()}
        for name, value in self.state_dict().items():
            if name.startswith(("rtd_head.", "rtd_classifier.")):
                state[name] = value
        return self._standalone(NucELForReplacedTokenDetection(self.config.encoder_configuration()), state)

    def generator_for_export(self) -> "NucELGenerator":
        """The generator as a plain masked language model, its token table the one it computes with."""
        if self.generator is None:
            raise ValueError("this model has no generator: replacement 'uniform' replaces bases without one")
        table, _ = self.shared_embedding_tables()
        if table is None:
            return self.generator
        state = {**self.generator.state_dict(), "model.embeddings.tok_embeddings.weight": table}
        return self._standalone(NucELGenerator(copy.deepcopy(self.generator.config)), state)

    def _standalone(self, model: NucELPreTrainedModel, state: dict) -> NucELPreTrainedModel:
        model.load_state_dict({name: value.detach().clone() for name, value in state.items()})
        model.config._attn_implementation = self.config._attn_implementation
        return model.to(device=self.device, dtype=self.dtype).train(self.training)


@dataclass
class NucELForReplacedTokenDetectionOutput(ModelOutput):
    logits: torch.FloatTensor | None = None  # (batch, length): the logit that each token was replaced
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class NucELForReplacedTokenDetection(NucELPreTrainedModel):
    """A pre-trained discriminator with its RTD head, as transformers' ElectraForPreTraining: per token, the logit
    that it was replaced (sigmoid: the probability). Its weights are those of `NucELForPreTraining` without the
    generator (`model.*` the encoder, `rtd_head.*`, `rtd_classifier.*`), so `AutoModel` loads the same folder as the
    encoder alone (NucELModel, or native ModernBertModel without remote code), and in a saved folder
    `AutoModelForPreTraining` resolves to this class (its `_auto_class`), as ELECTRA's discriminator folders do."""

    _auto_class = "AutoModelForPreTraining"  # marks the class as remote code and names it in the saved auto_map

    def __init__(self, config: NucELConfig):
        super().__init__(config)
        self.model = NucELModel(config)
        self.rtd_head = NucELPredictionHead(config)
        self.rtd_classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        **kwargs,
    ):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            position_ids=position_ids,
        )
        logits = self.rtd_classifier(self.rtd_head(outputs.last_hidden_state)).squeeze(-1)
        if not return_dict:
            return tuple(v for v in (logits, outputs.hidden_states, outputs.attentions) if v is not None)
        return NucELForReplacedTokenDetectionOutput(
            logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning heads


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """[CLS] vector, or the mean over real tokens (specials included, padding excluded)."""
    if pooling == "cls":
        return hidden_states[:, 0]
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class NucELForSequenceClassification(NucELPreTrainedModel):
    """Pooled encoder output -> head -> linear classifier (ModernBertForSequenceClassification's layout).

    `config.problem_type`: "single_label_classification" (cross-entropy), "multi_label_classification"
    (BCE on float multi-hot labels) or "regression" (MSE); inferred from the labels when unset, as in
    transformers. `config.classifier_pooling`: "cls" or "mean". `config.classifier_head`: "modernbert" (default:
    dense -> activation -> norm, then the output layer) or "linear" (the output layer alone on the pooled vector).
    """

    _auto_class = "AutoModelForSequenceClassification"  # marks the class as remote code: saving copies the code files

    def __init__(self, config: NucELConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = NucELModel(config)
        self.head = NucELPredictionHead(config) if config.classifier_head == "modernbert" else nn.Identity()
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        pooled = pool(outputs.last_hidden_state, attention_mask, self.config.classifier_pooling)
        logits = self.classifier(self.drop(self.head(pooled)))
        loss = None if labels is None else self.sequence_loss(logits, labels)
        if not return_dict:
            rest = tuple(v for v in (outputs.hidden_states, outputs.attentions) if v is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + rest
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def sequence_loss(self, logits, labels):
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class NucELForTokenClassification(NucELPreTrainedModel):
    """Per-token (per-base) labels; -100 labels (specials, padding) are ignored by the loss."""

    _auto_class = "AutoModelForTokenClassification"  # marks the class as remote code: saving copies the code files

    def __init__(self, config: NucELConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = NucELModel(config)
        self.head = NucELPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        **kwargs,
    ):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            position_ids=position_ids,
        )
        logits = self.classifier(self.drop(self.head(outputs.last_hidden_state)))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=IGNORE_INDEX)
        if not return_dict:
            rest = tuple(v for v in (outputs.hidden_states, outputs.attentions) if v is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + rest
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# Written into every saved config.json, so each Auto class finds its NucEL class in a saved folder.
AUTO_MAP = {
    "AutoConfig": "configuration_nucel.NucELConfig",
    "AutoModel": "modeling_nucel.NucELModel",
    "AutoModelForMaskedLM": "modeling_nucel.NucELGenerator",
    # A folder saved from NucELForReplacedTokenDetection names that class here instead (its `_auto_class`).
    "AutoModelForPreTraining": "modeling_nucel.NucELForPreTraining",
    "AutoModelForSequenceClassification": "modeling_nucel.NucELForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_nucel.NucELForTokenClassification",
}
