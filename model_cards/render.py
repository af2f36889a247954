"""Model cards for released NucEL checkpoints.

The card is `model_card.md` (a Jinja template, with one section per artefact where they differ) rendered through
`huggingface_hub.ModelCard.from_template`, so the YAML header is exactly what the Hub parses: library_name,
pipeline_tag, license, tags, datasets, metrics, base_model, widget examples and a model-index built from the
benchmark results JSON written by `nucel benchmark`. What the training outputs recorded (the pre-training run's
log and configuration, a fine-tune's finetune.json) is rendered from those records; what they cannot tell
(hardware, time) comes from `CardFacts`; a fact nobody recorded or supplied is printed as not recorded, never
guessed.
"""

from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from nucel.model_cards.card_rows import (
    METRICS,
    base_model_description,
    finetuning_data,
    finetuning_recipe,
    finetuning_rows,
    pretraining_figure_rows,
    pretraining_rows,
    released_label,
    test_scores,
)
from nucel.modeling_nucel.configuration_nucel import BASES
from nucel.tokenization import TOKENS_AFTER_BASES, TOKENS_BEFORE_BASES, token_length

TEMPLATE = "model_card.md"
NOT_RECORDED = "not recorded for this release"

PIPELINE_TAGS = {
    "encoder": "feature-extraction",
    "generator": "fill-mask",
    "classifier": "text-classification",
    "token-classifier": "token-classification",
}

# Suite name in results.json -> (display name, dataset type for the model-index).
SUITES = {
    "gue": ("GUE", "gue"),
    "genomic_benchmarks": ("Genomic Benchmarks", "genomic_benchmarks"),
    "nucleotide_transformer": (
        "NT downstream tasks (revised)",
        "InstaDeepAI/nucleotide_transformer_downstream_tasks_revised",
    ),
}

# Metric name in results.json -> (Hub metric id, display name).

# Widget example: a real sequence from the GUE prom_core_tata test split (a 70-bp core promoter, label 1).
PROMOTER = "AGGTTAAATAGGGGTTGAGATATGATGCTCAGGAGAAGCGCTTTCTTTCGCGAGCACCCTGAACCAGACC"
MASKED_POSITION = 35


def default_widget(
    artefact: str, mask_token: str, finetune: dict | None = None, labels: list[str] = ()
) -> list[dict] | None:
    """Widget inputs of the model's task: a masked base for the generator, a promoter for the encoder, and for a
    fine-tune the held-out examples its finetune.json recorded (one per class, of the trained length, titled with the
    release's `labels`). A fine-tune without recorded examples gets the promoter only where it lies in the trained
    length range, with no label claimed, and otherwise no widget: an input of a length the model never saw would
    mislead."""
    if artefact == "generator":
        masked = PROMOTER[:MASKED_POSITION] + mask_token + PROMOTER[MASKED_POSITION + 1 :]
        return [{"text": masked, "example_title": "Masked base in a core promoter"}]
    if artefact == "encoder":
        return [{"text": PROMOTER, "example_title": "Core promoter, 70 bp"}]
    if finetune and finetune.get("examples"):
        return [
            {
                "text": example["sequence"],
                "example_title": f"{released_label(example['label'], finetune, labels)} "
                f"(validation example, {len(example['sequence'])} bp)",
            }
            for example in finetune["examples"]
        ]
    lengths = ((finetune or {}).get("data", {}).get("train") or {}).get("length_bp")
    if lengths is None or lengths["min"] <= len(PROMOTER) <= lengths["max"]:
        return [{"text": PROMOTER, "example_title": "A 70-bp human core promoter (GUE prom_core_tata)"}]
    return None


@dataclass
class CardFacts:
    """What a model card needs that the checkpoint cannot tell; given by whoever releases (a YAML file)."""

    # "rtd" (replaced token detection) or "mlm" (the masked-LM baseline); None: the pre-training run's, if recorded
    objective: str | None = None
    # Where no pre-training run is recorded (e.g. imported weights): what the model was trained on, and how
    pretraining_data: str | None = None  # e.g. "GRCh38 primary assembly, 1224-bp windows with 100-bp overlap"
    training_recipe: str | None = None  # objective, optimizer, steps/epochs, batch
    training_precision: str | None = None  # e.g. "fp16 mixed precision"
    hardware: str | None = None  # e.g. "8x NVIDIA A100 40GB"
    training_time: str | None = None  # e.g. "5 days"
    reproduce: str | None = None  # the exact command(s) that produced the checkpoint
    task: str | None = None  # fine-tunes: what the labels mean and where the data comes from
    base_model: str | None = None  # fine-tunes: Hub id of the pre-trained encoder
    datasets: list[str] = field(default_factory=list)  # Hub dataset ids
    license: str = "apache-2.0"
    tags: list[str] = field(default_factory=list)  # added to the standard ones
    widget: list[dict] | None = None  # replaces the default widget examples

    @classmethod
    def from_yaml(cls, path: str | Path) -> "CardFacts":
        path = Path(path)
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of card facts, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown card fact(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def __post_init__(self):
        if self.objective not in (None, "rtd", "mlm"):
            raise ValueError(f"objective must be 'rtd' or 'mlm', got {self.objective!r}")


def eval_results(results: list[dict]) -> list[EvalResult]:
    """One model-index entry per task: the mean over seeds of the task's headline metric, as in results.json."""
    entries = []
    for suite_results in results:
        suite_name, dataset_type = SUITES[suite_results["suite"]]
        for task in suite_results["tasks"]:
            metric_id, metric_label = METRICS[task["metric"]]
            entries.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=dataset_type,
                    dataset_name=f"{suite_name} {task['task']}",
                    dataset_config=task["task"],
                    dataset_split="test",
                    metric_type=metric_id,
                    metric_value=task["mean"],
                    metric_name=f"{metric_label} (mean of {len(task['values'])} seeds)",
                )
            )
    return entries


def results_tables(results: list[dict]) -> list[dict]:
    """Per suite: rows of (task, metric, mean, sd, seeds, split sizes) and the suite averages, for the card body."""
    tables = []
    for suite_results in results:
        rows = [
            {
                "task": task["task"],
                "metric": METRICS[task["metric"]][1],
                "mean": f"{task['mean']:.4f}",
                "sd": "–" if task["sd"] is None else f"{task['sd']:.4f}",  # one run has no sd
                "seeds": len(task["values"]),
                "splits": " / ".join(
                    str(task["split_sizes"].get(split, "-")) for split in ("train", "validation", "test")
                ),
            }
            for task in suite_results["tasks"]
        ]
        averages = {name: f"{value:.4f}" for name, value in suite_results.get("averages", {}).items()}
        identity = suite_results["model_identity"]["sha256"]
        tables.append(
            {"suite": SUITES[suite_results["suite"]][0], "rows": rows, "averages": averages, "identity": identity}
        )
    return tables


def special_tokens(tokenizer) -> list[dict]:
    tokens = [{"token": token, "id": tokenizer.convert_tokens_to_ids(token)} for token in tokenizer.all_special_tokens]
    return sorted(tokens, key=lambda token: token["id"])


# ----------------------------------------------------------------------------------------------------------------
# What the training outputs recorded, as card rows


# An absolute (or home-relative) path's folders: a card names files, never where they sat on the training machine.
def render_model_card(
    *,
    artefact: str,
    repo_id: str,
    config,
    tokenizer,
    parameters: int,
    encoder_parameters: int,
    weights_dtype: str,
    facts: CardFacts,
    results: list[dict] = (),
    pretraining: dict | None = None,
    finetune: dict | None = None,
    base_model: str | None = None,
) -> str:
    """The README.md of a release: YAML metadata + body.

    `artefact`: encoder, generator, classifier, token-classifier or adapter (a LoRA classifier's adapter alone).
    `pretraining`: the model's pre-training record (core/records.py; its recipe holds no local paths); `finetune`: a
    fine-tune's finetune.json; `base_model`: the Hub id of a fine-tune's base, where it has one.
    """
    if artefact not in PIPELINE_TAGS and artefact != "adapter":
        raise ValueError(f"unknown artefact {artefact!r}; choose one of {sorted(PIPELINE_TAGS) + ['adapter']}")
    model_name = repo_id.split("/")[-1]
    metric_names = sorted({METRICS[task["metric"]][0] for suite in results for task in suite["tasks"]})
    labelled = artefact in ("classifier", "token-classifier", "adapter")
    labels = [config.id2label[i] for i in sorted(config.id2label)] if labelled else []
    objective = (pretraining["objective"] if pretraining else None) or facts.objective
    synthetic = bool(pretraining and any(file.get("builtin", file.get("synthetic")) for file in pretraining["data"]))
    card_data = ModelCardData(
        library_name="peft" if artefact == "adapter" else "transformers",
        pipeline_tag=PIPELINE_TAGS.get(artefact, "text-classification"),
        license=facts.license,
        tags=[
            "biology",
            "genomics",
            "dna",
            "nucel",
            "modernbert",
            "electra",
            *(["synthetic-data"] if synthetic else []),
            *facts.tags,
        ],
        datasets=facts.datasets or None,
        metrics=metric_names or None,
        base_model=base_model,
        model_name=model_name,
        eval_results=eval_results(results) or None,
        # The Hub runs no widget for a PEFT adapter of a remote-code model.
        widget=None
        if artefact == "adapter"
        else facts.widget or default_widget(artefact, tokenizer.mask_token, finetune, labels),
        # The fill-mask widget scores the four bases only: the vocabulary's reserved rows would fill its top 5.
        inference={"parameters": {"targets": list(BASES), "top_k": len(BASES)}} if artefact == "generator" else None,
    )
    template = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    card = ModelCard.from_template(
        card_data,
        template_str=template,
        artefact=artefact,
        repo_id=repo_id,
        model_name=model_name,
        config=config,
        labels=labels,
        parameters=f"{parameters:,}",
        encoder_parameters=f"{encoder_parameters:,}",
        weights_dtype=weights_dtype,
        special_tokens=special_tokens(tokenizer),
        mask_token=tokenizer.mask_token,
        bases=BASES,
        base_ids=[tokenizer.convert_tokens_to_ids(base) for base in BASES],
        vocab_size=len(tokenizer),
        context_tokens=tokenizer.model_max_length,
        context_bp=tokenizer.model_max_length - token_length(0),
        tokens_before=TOKENS_BEFORE_BASES,
        tokens_after=TOKENS_AFTER_BASES,
        window=config.local_attention // 2,
        facts=facts,
        not_recorded=NOT_RECORDED,
        results_tables=results_tables(results),
        objective=objective,
        synthetic=synthetic,
        pretraining=pretraining,
        pretraining_rows=pretraining_rows(pretraining) if pretraining else [],
        pretraining_figures=pretraining_figure_rows(pretraining) if pretraining else [],
        eval_windows=(pretraining["recipe"] or {}).get("eval_windows") if pretraining else None,
        public_recipe=yaml.safe_dump(pretraining["recipe"], sort_keys=False).strip()
        if pretraining and pretraining["recipe"]
        else None,
        finetune=finetune,
        base_model=base_model,
        base_description=base_model_description(finetune, base_model) if finetune else base_model,
        finetuning_rows=finetuning_rows(finetune, base_model, artefact == "adapter") if finetune else [],
        finetuning_data=finetuning_data(finetune, labels) if finetune else [],
        finetuning_recipe=finetuning_recipe(finetune) if finetune else None,
        test_scores=test_scores(finetune),
    )
    return str(card)
