"""Model cards for released NucEL checkpoints.

The card is `model_card.md` (a Jinja template, with one section per artefact where they differ) rendered through
`huggingface_hub.ModelCard.from_template`, so the YAML header is exactly what the Hub parses: library_name,
pipeline_tag, license, tags, datasets, metrics, base_model, widget examples and a model-index built from the
benchmark results JSON (notes/RESULTS_SCHEMA.md). What the weights cannot tell (data, hardware, time) comes from
`CardFacts`; a fact nobody supplied is printed as not recorded, never guessed.
"""

from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from nucel.modeling_nucel.configuration_nucel import BASES
from nucel.tokenization import token_length

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
    "nucleotide_transformer": ("NT downstream tasks (revised)", "InstaDeepAI/nucleotide_transformer_downstream_tasks_revised"),
}

# Metric name in results.json -> (Hub metric id, display name).
METRICS = {
    "mcc": ("matthews_correlation", "MCC"),
    "accuracy": ("accuracy", "Accuracy"),
    "f1_macro": ("f1", "Macro F1"),
    "auroc": ("roc_auc", "AUROC"),
    "pearson": ("pearsonr", "Pearson r"),
    "spearman": ("spearmanr", "Spearman rho"),
}

# Widget examples: real sequences from the GUE prom_core_tata test split (70 bp core promoters, label 1 = promoter).
PROMOTER = "AGGTTAAATAGGGGTTGAGATATGATGCTCAGGAGAAGCGCTTTCTTTCGCGAGCACCCTGAACCAGACC"
NON_PROMOTER = "GCAATAAAAGGCTTAGCCACATAGTGCATGCAGAGCTCTGACTTCTAGGGCAAAACATAAGCATGTACAC"
MASKED_POSITION = 35


def default_widget(artefact: str, mask_token: str) -> list[dict]:
    if artefact == "generator":
        masked = PROMOTER[:MASKED_POSITION] + mask_token + PROMOTER[MASKED_POSITION + 1 :]
        return [{"text": masked, "example_title": "Masked base in a core promoter"}]
    if artefact in ("classifier", "token-classifier"):
        return [
            {"text": PROMOTER, "example_title": "Promoter (GUE prom_core_tata, label 1)"},
            {"text": NON_PROMOTER, "example_title": "Non-promoter (GUE prom_core_tata, label 0)"},
        ]
    return [{"text": PROMOTER, "example_title": "Core promoter, 70 bp"}]


@dataclass
class CardFacts:
    """What a model card needs that the checkpoint cannot tell; given by whoever releases (a YAML file)."""

    objective: str = "rtd"  # "rtd" (replaced token detection) or "mlm" (the masked-LM baseline)
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
        if self.objective not in ("rtd", "mlm"):
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
                "sd": f"{task['sd']:.4f}",
                "seeds": len(task["values"]),
                "splits": " / ".join(str(task["split_sizes"].get(split, "-")) for split in ("train", "validation", "test")),
            }
            for task in suite_results["tasks"]
        ]
        averages = {name: f"{value:.4f}" for name, value in suite_results.get("averages", {}).items()}
        tables.append({"suite": SUITES[suite_results["suite"]][0], "rows": rows, "averages": averages})
    return tables


def special_tokens(tokenizer) -> list[dict]:
    tokens = [{"token": token, "id": tokenizer.convert_tokens_to_ids(token)} for token in tokenizer.all_special_tokens]
    return sorted(tokens, key=lambda token: token["id"])


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
) -> str:
    """The README.md of a release: YAML metadata + body. `artefact`: encoder, generator, classifier or token-classifier."""
    if artefact not in PIPELINE_TAGS:
        raise ValueError(f"unknown artefact {artefact!r}; choose one of {sorted(PIPELINE_TAGS)}")
    model_name = repo_id.split("/")[-1]
    metric_names = sorted({METRICS[task["metric"]][0] for suite in results for task in suite["tasks"]})
    labels = [config.id2label[i] for i in sorted(config.id2label)] if artefact in ("classifier", "token-classifier") else []
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS[artefact],
        license=facts.license,
        tags=["biology", "genomics", "dna", "nucel", "modernbert", "electra", *facts.tags],
        datasets=facts.datasets or None,
        metrics=metric_names or None,
        base_model=facts.base_model,
        model_name=model_name,
        eval_results=eval_results(results) or None,
        widget=facts.widget or default_widget(artefact, tokenizer.mask_token),
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
        window=config.local_attention // 2,
        facts=facts,
        not_recorded=NOT_RECORDED,
        results_tables=results_tables(results),
    )
    return str(card)
