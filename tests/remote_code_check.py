"""Run in a fresh interpreter by test_save_load.py, as a Hub user would: the nucel package is NOT importable,
nothing is fetched from the network, and every Auto class and pipeline must load the saved folders and
reproduce the outputs recorded when they were saved. Used with the current transformers and with 4.57.

Usage: python remote_code_check.py ROOT   (ROOT holds the saved folders and expected.pt)
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
sys.modules["nucel"] = None  # a Hub user has only the folder's own code

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    pipeline,
)

root = sys.argv[1]
expected = torch.load(os.path.join(root, "expected.pt"))
sequence = expected["sequence"]


def folder(name):
    return os.path.join(root, name)


def check_close(name, actual, wanted, tolerance=1e-5):
    actual = torch.as_tensor(actual, dtype=torch.float32)
    # Equal infinities (logits of non-bases in a base-restricted generator) count as equal.
    difference = torch.where(actual == wanted, 0.0, (actual - wanted).abs()).max().item()
    assert difference <= tolerance, f"{name}: max abs difference {difference} > {tolerance}"
    print(f"{name}: ok ({difference:.1e})")


tokenizer = AutoTokenizer.from_pretrained(folder("encoder"))
assert tokenizer(sequence)["input_ids"] == expected["input_ids"].tolist(), "tokenizer ids differ"
inputs = tokenizer(sequence, return_tensors="pt")
masked_inputs = tokenizer(expected["masked_sequence"], return_tensors="pt")

config = AutoConfig.from_pretrained(folder("encoder"), trust_remote_code=True)
assert type(config).__name__ == "NucELConfig", type(config)

for auto_class, name, output_name in [
    (AutoModel, "encoder", "last_hidden_state"),
    (AutoModelForMaskedLM, "generator", "logits"),
    (AutoModelForSequenceClassification, "classifier", "logits"),
    (AutoModelForTokenClassification, "token_classifier", "logits"),
]:
    model = auto_class.from_pretrained(folder(name), trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model)
    assert not model.training, f"{name}: from_pretrained must return eval mode"
    with torch.no_grad():
        check_close(f"{auto_class.__name__}({name})", getattr(model(**inputs), output_name), expected[name])

pretraining = AutoModelForPreTraining.from_pretrained(folder("pretraining"), trust_remote_code=True)
assert type(pretraining).__name__ == "NucELForPreTraining"
torch.manual_seed(0)
output = pretraining(input_ids=expected["rtd_input_ids"], labels=expected["rtd_labels"])
check_close("AutoModelForPreTraining(pretraining) loss", output.loss, expected["rtd_loss"], 1e-4)

# Dual mode: the same folders read by transformers' native ModernBERT, without trust_remote_code.
native = AutoModel.from_pretrained(folder("encoder"))
assert type(native).__name__ == "ModernBertModel", type(native)
with torch.no_grad():
    check_close("native ModernBertModel(encoder)", native(**inputs).last_hidden_state, expected["encoder"])
native = AutoModelForMaskedLM.from_pretrained(folder("generator"))
with torch.no_grad():
    # Native code cannot mask non-base logits; their bias makes their probability vanish instead.
    probabilities = native(**inputs).logits.softmax(-1)
    check_close("native ModernBertForMaskedLM(generator)", probabilities, expected["generator"].softmax(-1))

features = pipeline("feature-extraction", model=folder("encoder"), trust_remote_code=True)(sequence)
check_close("pipeline feature-extraction", torch.tensor(features), expected["encoder"])

fill = pipeline("fill-mask", model=folder("generator"), trust_remote_code=True, top_k=4)(expected["masked_sequence"])
scores = {candidate["token_str"]: candidate["score"] for candidate in fill}
assert set(scores) == set("ACGT"), scores
wanted = expected["fill_mask_probabilities"]
check_close("pipeline fill-mask", torch.tensor([scores[b] for b in "ACGT"]), wanted)

classify = pipeline("text-classification", model=folder("classifier"), trust_remote_code=True, top_k=None)([sequence])[
    0
]
scores = {candidate["label"]: candidate["score"] for candidate in classify}
check_close(
    "pipeline text-classification",
    torch.tensor([scores["non-promoter"], scores["promoter"]]),
    expected["classifier_probabilities"],
)
print("ALL OK")
