"""FlexAttention (`attn_implementation="flex_attention"`): its block mask, and the same outputs as SDPA and eager.

FlexAttention compiles on first use (Inductor on CPU, some 15-25 s here): the comparisons share one module-scoped
model so that the compilation happens once. On CPU, torch 2.13's FlexAttention has no backward pass, so gradient
parity is checked on a GPU by benchmarks/gpu_check.py; here the CPU fallback for training is checked instead.
"""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from modernbert_reference import dna_batch

from nucel import NucELConfig, NucELModel
from nucel.core.models import save_model_folder
from nucel.modeling_nucel.attention_nucel import FLEX_BLOCK, UnpaddedLayout, flex_block_mask

pytestmark = pytest.mark.skipif(
    not hasattr(torch.nn.attention, "flex_attention"), reason="FlexAttention needs torch >= 2.5"
)

# Padded rows, a long row (> 2 windows and > 2 flex tiles), a 1-base row; and packed rows.
LENGTHS = [700, 310, 140, 1]


def token_mask(layout: UnpaddedLayout, window: int | None) -> torch.Tensor:
    """(tokens, tokens) bool: may query i attend key j, computed pair by pair from the layout."""
    same = layout.sequence_ids[:, None] == layout.sequence_ids[None, :]
    if window is None:
        return same
    return same & ((layout.positions[:, None] - layout.positions[None, :]).abs() <= window)


def layouts():
    config = NucELConfig.from_preset("tiny")
    input_ids, attention_mask = dna_batch(LENGTHS)
    padded = UnpaddedLayout.build(attention_mask, None, *input_ids.shape, "cpu", config)
    # Three sequences packed into each of two rows (positions restart at 0), the second row padded.
    positions = torch.cat([torch.arange(n) for n in (200, 300, 100)]).expand(2, 600).clone()
    packed_mask = torch.ones(2, 600, dtype=torch.long)
    packed_mask[1, 450:] = 0
    packed = UnpaddedLayout.build(packed_mask, positions, 2, 600, "cpu", config)
    return {"padded": padded, "packed": packed}


@pytest.mark.parametrize("kind", ["padded", "packed"])
@pytest.mark.parametrize("window", [None, 64], ids=["global", "local"])
def test_block_mask_visits_exactly_the_tiles_with_allowed_pairs(kind, window):
    layout = layouts()[kind]
    allowed = token_mask(layout, window)
    tokens = layout.tokens
    blocks = -(-tokens // FLEX_BLOCK)
    padded_allowed = torch.zeros(blocks * FLEX_BLOCK, blocks * FLEX_BLOCK, dtype=torch.bool)
    padded_allowed[:tokens, :tokens] = allowed
    tiles = padded_allowed.view(blocks, FLEX_BLOCK, blocks, FLEX_BLOCK)
    any_allowed, all_allowed = tiles.any(dim=(1, 3)), tiles.all(dim=(1, 3))

    mask = flex_block_mask(layout.sequence_ids, layout.positions, layout.cu_seqlens, window)
    visited = mask.to_dense()[0, 0].bool()
    assert torch.equal(visited, any_allowed)  # no tile with an allowed pair skipped, no empty tile visited
    full = torch.zeros_like(visited)
    for row in range(blocks):
        count = int(mask.full_kv_num_blocks[0, 0, row])
        full[row, mask.full_kv_indices[0, 0, row, :count].long()] = True
    assert not (full & ~all_allowed).any()  # a tile skips the mask only where every pair is allowed
    # The mask function itself agrees with the pairwise mask on every real pair.
    query, key = torch.meshgrid(torch.arange(tokens), torch.arange(tokens), indexing="ij")
    assert torch.equal(mask.mask_mod(0, 0, query, key), allowed)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    reference = NucELModel(NucELConfig.from_preset("tiny")).eval()
    flex = NucELModel(NucELConfig.from_preset("tiny")).eval()
    flex.load_state_dict(reference.state_dict())
    flex.set_attn_implementation("flex_attention")
    return reference, flex


@pytest.mark.slow
def test_flex_equals_sdpa_and_eager_on_padded_unpadded_and_packed_batches(models):
    reference, flex = models
    input_ids, attention_mask = dna_batch(LENGTHS)
    full_rows, _ = dna_batch([599, 599])  # 600 tokens each
    packed_positions = torch.cat([torch.arange(n) for n in (200, 300, 100)]).expand(2, 600)
    cases = {
        "padded": dict(input_ids=input_ids, attention_mask=attention_mask),
        "unpadded": dict(input_ids=full_rows),
        "packed": dict(input_ids=full_rows, position_ids=packed_positions),
    }
    eager = copy.deepcopy(reference)
    eager.set_attn_implementation("eager")
    for implementation, model in (("sdpa", reference), ("eager", eager)):
        for name, inputs in cases.items():
            real = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"])).bool()
            with torch.no_grad():
                got = flex(**inputs, output_hidden_states=True).hidden_states
                expected = model(**inputs, output_hidden_states=True).hidden_states
            for layer, (a, b) in enumerate(zip(got, expected)):  # every layer: local and global ones
                difference = (a - b)[real].abs().max().item()
                assert difference <= 1e-5, f"{name}, layer {layer}: flex vs {implementation} differ by {difference}"


@pytest.mark.slow
def test_training_with_flex_on_cpu_falls_back_to_sdpa_with_the_same_gradients(models):
    reference, flex = models
    input_ids, attention_mask = dna_batch([300, 90])
    gradients = []
    for model in (reference, flex):
        model.zero_grad()
        model(input_ids, attention_mask=attention_mask).last_hidden_state[
            attention_mask.bool()
        ].square().sum().backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], atol=1e-5, rtol=1e-4)


CHILD = """
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
sys.modules["nucel"] = None  # a Hub user has only the folder's own code
import torch
from transformers import AutoModel
folder, ids, mask = sys.argv[1], torch.tensor(json.loads(sys.argv[2])), torch.tensor(json.loads(sys.argv[3]))
model = AutoModel.from_pretrained(folder, trust_remote_code=True, attn_implementation="flex_attention")
assert model.config._attn_implementation == "flex_attention", model.config._attn_implementation
with torch.no_grad():
    print(json.dumps(model(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()].tolist()))
"""


@pytest.mark.slow
def test_a_saved_folder_runs_flex_in_a_fresh_process_without_the_package(models, tmp_path):
    reference, _ = models
    save_model_folder(reference, tmp_path / "encoder")
    input_ids, attention_mask = dna_batch([300, 90])
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "encoder"),
            json.dumps(input_ids.tolist()),
            json.dumps(attention_mask.tolist()),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    got = torch.tensor(json.loads(completed.stdout.strip().splitlines()[-1]))
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=attention_mask).last_hidden_state[attention_mask.bool()]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_compiled_layers_with_flex_equal_the_eager_sdpa_model(models):
    reference, flex = models
    compiled = copy.deepcopy(flex)
    compiled.compile_layers()
    for lengths in ([300, 140, 20], [511, 90]):
        input_ids, attention_mask = dna_batch(lengths)
        real = attention_mask.bool()
        with torch.no_grad():
            expected = reference(input_ids, attention_mask=attention_mask).last_hidden_state[real]
            got = compiled(input_ids, attention_mask=attention_mask).last_hidden_state[real]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
