"""What a fine-tuning run is set to do (`FinetuneSettings`): kept apart from the trainer (training/finetune.py) so
that the command line (`nucel finetune --help`), the benchmark registry and the model card read the settings without
importing torch. Each field's comment is its option's help.
"""

from dataclasses import dataclass

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
METHODS = ("full", "lora", "frozen")
POOLINGS = ("cls", "mean")
# The classifier heads modeling_nucel offers (its CLASSIFIER_HEADS; written here too so that reading settings does
# not import torch, and tests/test_command_line.py checks that the two agree).
HEADS = ("modernbert", "linear")


@dataclass
class FinetuneSettings:
    label_names: list[str]  # classification: the classes, in id order; multi-label/regression: the targets
    problem_type: str = "single_label_classification"  # what the labels are
    pooling: str = "cls"  # the vector the head reads: cls or mean
    method: str = "full"  # full: train everything; lora: adapters; frozen: a linear probe of the fixed encoder
    # "modernbert" (dense -> activation -> norm -> linear) or "linear" (the paper's: one linear layer on the pooled
    # vector); None: "linear" for method "frozen" (a linear probe), else "modernbert". Resolved on construction.
    head: str | None = None  # linear (the paper's) or modernbert; default: linear for frozen, else modernbert
    learning_rate: float = 3e-5  # peak learning rate
    batch_size: int = 32  # sequences per optimiser step
    epochs: float = 3.0  # passes over the training data (max_steps wins)
    max_steps: int | None = None  # optimiser steps; when set, overrides epochs
    warmup_steps: int = 0  # linear warm-up steps
    lr_scheduler: str = "linear"  # any transformers scheduler name ("constant_with_warmup": no decay)
    weight_decay: float = 0.01  # AdamW weight decay
    eval_steps: int | None = None  # steps between validations (None: once per epoch)
    early_stopping_patience: int | None = 5  # validations without improvement before stopping (None: never)
    # Counted only once the validation loss has left the plateau of a one-class predictor (the loss of predicting the
    # training label frequencies): a run still on it is never stopped. Set, it replaces early_stopping_patience.
    early_stopping_steps: int | None = None  # steps without improvement, after the one-class plateau, before stopping
    max_length_bp: int | None = None  # truncate longer sequences to this many bases (None: no truncation)
    seed: int = 42  # seed of the head's initialisation, the data order and dropout
    lora_rank: int = 8  # LoRA rank (method lora)
    lora_alpha: int = 16  # LoRA alpha (method lora)
    lora_dropout: float = 0.05  # LoRA dropout (method lora)
    compile: bool = False  # torch.compile each encoder layer (worth it for long runs, on GPU)

    def __post_init__(self):
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.head is None:
            self.head = "linear" if self.method == "frozen" else "modernbert"
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.method == "frozen" and self.head != "linear":
            raise ValueError(
                f"method 'frozen' is a linear probe (one linear layer on the frozen encoder's pooled vector); head "
                f"{self.head!r} would train a dense layer and a norm as well. Use head 'linear' (the default for "
                "'frozen') or method 'full'"
            )
        if self.early_stopping_steps is not None:
            if self.early_stopping_steps < 1:
                raise ValueError(f"early_stopping_steps must be at least 1, got {self.early_stopping_steps}")
            self.early_stopping_patience = None  # replaced (and recorded as such in finetune.json)
        if not self.label_names:
            raise ValueError("label_names is empty: name the classes (or the regression targets)")
