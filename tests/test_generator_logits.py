"""A generator folder gives the same finite logits on every vocabulary id in both modes (NucEL classes with
trust_remote_code, native ModernBertForMaskedLM without), so a textbook entropy over the vocabulary is a number in
both; the restriction to A/C/G/T lives in the decoder bias."""

import torch
from transformers import AutoModelForMaskedLM, ModernBertForMaskedLM

from nucel.core.models import save_model_folder
from nucel.modeling_nucel import NucELConfig, NucELGenerator
from nucel.modeling_nucel.configuration_nucel import BASE_IDS


def test_both_modes_give_the_same_finite_logits_on_every_id(tmp_path, tokenizer):
    torch.manual_seed(0)
    folder = save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), tmp_path / "g"
    )
    remote = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    native = AutoModelForMaskedLM.from_pretrained(folder)
    assert isinstance(native, ModernBertForMaskedLM) and type(remote).__name__ == "NucELGenerator"  # remote code
    batch = tokenizer(["ACGT[MASK]ACGTTGCA", "GGATC[MASK]A"], padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ours, theirs = remote(**batch).logits[real], native(**batch).logits[real]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-6)
    for logits in (ours, theirs):
        assert torch.isfinite(logits).all()
        entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
        assert torch.isfinite(entropy).all()
        assert torch.all(logits.softmax(-1)[:, list(BASE_IDS)].sum(-1) > 1 - 1e-6)  # ~all mass on the bases
