"""The paper's synthetic motif-order task, and the experiment around it.

Every sequence holds motif A once and motif B once, in random background. A and B have the same bases in a
different order (by default B is A reversed), so base or k-mer composition up to the motif length cannot tell
the classes apart: a sequence is positive (label 1) when A comes before B, negative (0) when B comes first. The
gap between the motifs is drawn uniformly from [min_gap, max_gap]; with gaps beyond the local attention window
(±64 bases) only the global layers can relate the two motifs directly.

    nucel motif-order-data -o motif_order.csv --size 2000 --seed 0          # the data set only
    nucel motif-order -o runs/motif_order                                     # fine-tune, accuracy, SNR plot

The experiment fine-tunes a model (default: a randomly initialised tiny NucEL; or any NucEL folder) with
`nucel.training.finetune`, reports test accuracy, and measures the motif signal-to-noise ratio of attention
(`nucel.core.attention_maps`) in every layer, global ones marked, before and after fine-tuning, as in the paper's
Figure 4. It writes results.json, snr.png, attention.png (one test sequence, every layer, mean over heads) and
the fine-tuned model folder.
"""

import csv
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from nucel.core.files import atomic_file, write_json_atomically, write_text_atomically
from nucel.core.tables import Split

DEFAULT_MOTIF_A = "TTAGGCAC"
DEFAULT_MOTIF_B = DEFAULT_MOTIF_A[::-1]  # CACGGATT: the same bases, another order
BASES = "ACGT"


@dataclass(frozen=True)
class MotifOrderExample:
    sequence: str
    label: int  # 1: motif A precedes motif B; 0: B precedes A
    a_start: int  # 0-based start of motif A
    b_start: int  # 0-based start of motif B


def occurrences(sequence: str, motif: str) -> list[int]:
    return [i for i in range(len(sequence) - len(motif) + 1) if sequence.startswith(motif, i)]


def make_motif_order_dataset(
    size: int,
    length: int = 200,
    motif_a: str = DEFAULT_MOTIF_A,
    motif_b: str = DEFAULT_MOTIF_B,
    min_gap: int = 0,
    max_gap: int = 120,
    seed: int = 0,
) -> list[MotifOrderExample]:
    """`size` examples, exactly half positive (the extra one of an odd size is negative), in random order.

    Each sequence has exactly one occurrence of each motif (backgrounds that happen to contain a motif are
    drawn again), at the positions recorded in the example. The same arguments always give the same data.
    """
    import numpy as np  # here: the command line reads this module's settings, and its --help should not wait

    if size < 2:
        raise ValueError(f"--size {size}: give at least 2 sequences (one of each class)")
    motif_a, motif_b = motif_a.upper(), motif_b.upper()
    if sorted(motif_a) != sorted(motif_b) or motif_a == motif_b:
        raise ValueError(
            f"the motifs must have identical base composition and differ in order: {motif_a!r}, {motif_b!r}"
        )
    if set(motif_a) - set(BASES):
        raise ValueError(f"motifs must be written in A, C, G, T: {motif_a!r}")
    if not 0 <= min_gap <= max_gap:
        raise ValueError(f"--min-gap {min_gap}, --max-gap {max_gap}: need 0 <= min-gap <= max-gap")
    if len(motif_a) + len(motif_b) + max_gap > length:
        raise ValueError(
            f"length {length} cannot hold both motifs ({len(motif_a)} + {len(motif_b)} bases) {max_gap} bases apart"
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation([1] * (size // 2) + [0] * (size - size // 2))
    examples = []
    for label in labels:
        first, second = (motif_a, motif_b) if label == 1 else (motif_b, motif_a)
        gap = int(rng.integers(min_gap, max_gap + 1))
        first_start = int(rng.integers(0, length - len(first) - gap - len(second) + 1))
        second_start = first_start + len(first) + gap
        while True:
            bases = rng.choice(list(BASES), size=length).tolist()
            bases[first_start : first_start + len(first)] = first
            bases[second_start : second_start + len(second)] = second
            sequence = "".join(bases)
            if len(occurrences(sequence, motif_a)) == 1 and len(occurrences(sequence, motif_b)) == 1:
                break
        a_start, b_start = (first_start, second_start) if label == 1 else (second_start, first_start)
        examples.append(MotifOrderExample(sequence, int(label), a_start, b_start))
    return examples


def write_dataset(path: str | Path, examples: list[MotifOrderExample]) -> None:
    """CSV with columns sequence, label, a_start, b_start (readable by `training/finetune.py`)."""
    with atomic_file(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sequence", "label", "a_start", "b_start"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(example) for example in examples)


def motif_spans(example: MotifOrderExample, motif_length: int) -> list[tuple[int, int]]:
    return [(example.a_start, example.a_start + motif_length), (example.b_start, example.b_start + motif_length)]


# ----------------------------------------------------------------------------------------------------------------
# The experiment


@dataclass
class ExperimentSettings:
    """Every setting of `nucel motif-order` (its options are generated from these fields and their comments)."""

    model: str = "random:tiny"  # NucEL folder / Hub id, or random:<preset>
    train_size: int = 2000  # training sequences
    validation_size: int = 400  # validation sequences
    test_size: int = 400  # test sequences
    # Short sequences by default: a randomly initialised tiny model learns them in minutes on a CPU. Longer
    # gaps (beyond the ±64 local window) need a pre-trained model or many more steps (see the module docstring).
    length: int = 64  # sequence length in bases
    motif_a: str = DEFAULT_MOTIF_A  # the motif that comes first in a positive sequence
    motif_b: str = DEFAULT_MOTIF_B  # same bases as motif A, another order
    min_gap: int = 0  # fewest bases between the motifs
    max_gap: int = 40  # most bases between the motifs
    epochs: float = 12.0  # fine-tuning epochs
    learning_rate: float = 2e-3  # peak learning rate
    batch_size: int = 32  # sequences per step
    seed: int = 0  # seed of the data (and of the fine-tuning)
    snr_sequences: int = 200  # test sequences the SNR is averaged over

    @staticmethod
    def data_fields() -> tuple[str, ...]:
        """What `nucel motif-order-data` needs of these: the data set's own settings."""
        return ("length", "motif_a", "motif_b", "min_gap", "max_gap", "seed")


def split_of(examples: list[MotifOrderExample], name: str) -> Split:
    digest = hashlib.sha256("".join(f"{e.sequence}{e.label}" for e in examples).encode()).hexdigest()
    return Split([e.sequence for e in examples], [e.label for e in examples], f"motif-order {name}", digest)


def run_experiment(output_dir: str | Path, settings: ExperimentSettings, device: str | None = None) -> dict:
    """Fine-tune on generated data, measure accuracy and SNR; write results.json, snr.png, attention.png."""
    # Imported here, not at the top: the Trainer stack takes seconds to import, and every `nucel` command
    # imports this module to register its sub-commands.
    from nucel.core.attention_maps import attention_maps, global_layers, plot_attention, plot_snr, snr_per_layer
    from nucel.core.models import default_device
    from nucel.modeling_nucel import NucELForSequenceClassification
    from nucel.training.finetune import build_classifier, finetune, tokenizer_for
    from nucel.training.finetune_config import FinetuneSettings

    output_dir = Path(output_dir)
    # Three disjoint seeds per experiment seed, one per split.
    data = {
        name: make_motif_order_dataset(
            size,
            settings.length,
            settings.motif_a,
            settings.motif_b,
            settings.min_gap,
            settings.max_gap,
            seed=settings.seed * 3 + offset,
        )
        for offset, (name, size) in enumerate(
            (("train", settings.train_size), ("validation", settings.validation_size), ("test", settings.test_size))
        )
    }
    finetune_settings = FinetuneSettings(
        label_names=["0", "1"],
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        warmup_steps=50,
        seed=settings.seed,
        early_stopping_patience=None,  # loss sits on a plateau for a few epochs before the task "clicks"
    )
    tokenizer = tokenizer_for(settings.model)
    snr_examples = data["test"][: settings.snr_sequences]
    snr_sequences = [e.sequence for e in snr_examples]
    snr_spans = [motif_spans(e, len(settings.motif_a)) for e in snr_examples]
    device = default_device(device)

    # The same initial weights the fine-tuning starts from (build_classifier seeds them), before any training.
    untrained = build_classifier(settings.model, finetune_settings).to(device).eval()
    # Every layer, not only the global ones: on sequences shorter than the local window the local layers see
    # both motifs too, and the comparison shows where the model actually looks.
    layers = list(range(untrained.config.num_hidden_layers))
    snr_before = snr_per_layer(untrained.model, tokenizer, snr_sequences, snr_spans, layers, progress=False)

    result = finetune(
        settings.model,
        split_of(data["train"], "train"),
        split_of(data["validation"], "validation"),
        output_dir / "model",
        finetune_settings,
        test=split_of(data["test"], "test"),
    )
    model = NucELForSequenceClassification.from_pretrained(output_dir / "model").to(device).eval()
    snr_after = snr_per_layer(model.model, tokenizer, snr_sequences, snr_spans, layers, progress=False)

    accuracy = result.test_metrics["accuracy"]
    plot_snr(
        {"before fine-tuning": snr_before.tolist(), "after fine-tuning": snr_after.tolist()},
        layers,
        output_dir / "snr.png",
        model.config,
        title=f"motif-order task ({settings.length} bp, gap {settings.min_gap}-{settings.max_gap}): motif attention "
        f"SNR per layer; test accuracy {accuracy:.3f}",
    )
    example = max((e for e in data["test"] if e.label == 1), key=lambda e: e.b_start - e.a_start)  # the widest gap
    maps = attention_maps(model.model, tokenizer, [example.sequence], layers, progress=False)[0].mean(
        axis=1, keepdims=True
    )
    plot_attention(
        maps,
        layers,
        ["mean"],
        output_dir / "attention.png",
        model.config,
        motif_spans(example, len(settings.motif_a)),
        title=f"fine-tuned model, mean over heads, one test sequence: motif A at base {example.a_start}, "
        f"motif B at base {example.b_start} (outlined in red)",
    )

    results = {
        "settings": asdict(settings),
        "test_accuracy": accuracy,
        "test_metrics": result.test_metrics,
        "steps_trained": result.steps_trained,
        "train_seconds": round(result.train_seconds, 1),
        "layers": layers,
        "global_layers": global_layers(model.config),
        "snr_before_finetuning": snr_before.tolist(),
        "snr_after_finetuning": snr_after.tolist(),
        "snr_sequences": len(snr_sequences),
        "files": ["results.json", "results.md", "snr.png", "attention.png", "model/"],
    }
    write_json_atomically(output_dir / "results.json", results)
    write_text_atomically(output_dir / "results.md", results_markdown(results))
    return results


def results_markdown(results: dict) -> str:
    """The experiment's report, generated from results.json (the figures quoted anywhere come from here)."""
    settings = results["settings"]
    lines = [
        "# Motif-order task",
        "",
        f"`nucel motif-order` with model `{settings['model']}`, {settings['length']}-bp sequences, gap "
        f"{settings['min_gap']}-{settings['max_gap']}, motifs {settings['motif_a']} / {settings['motif_b']}; "
        f"{settings['train_size']} / {settings['validation_size']} / {settings['test_size']} train / validation / test "
        f"sequences; {settings['epochs']:g} epochs at learning rate {settings['learning_rate']:g}, batch "
        f"{settings['batch_size']}, seed {settings['seed']} ({results['steps_trained']} steps, "
        f"{results['train_seconds']:.0f} s).",
        "",
        f"Test accuracy: **{results['test_accuracy']:.3f}** "
        f"(MCC {results['test_metrics'].get('mcc', float('nan')):.3f}).",
        "",
        f"Motif attention SNR per layer, averaged over {results['snr_sequences']} test sequences (1 = the motifs get "
        "no more attention than any other base):",
        "",
        "| layer | kind | before fine-tuning | after fine-tuning |",
        "|---|---|---|---|",
    ]
    for layer, before, after in zip(
        results["layers"], results["snr_before_finetuning"], results["snr_after_finetuning"]
    ):
        kind = "global" if layer in results["global_layers"] else "local"
        lines.append(f"| {layer} | {kind} | {before:.3f} | {after:.3f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# Command line


def run_generate(args) -> None:
    examples = make_motif_order_dataset(
        args.size, args.length, args.motif_a, args.motif_b, args.min_gap, args.max_gap, args.seed
    )
    write_dataset(args.output, examples)
    print(f"{len(examples)} sequences ({sum(e.label for e in examples)} positive) -> {args.output}")


def run_experiment_command(args) -> None:
    fields = ExperimentSettings.__dataclass_fields__
    settings = ExperimentSettings(**{name: getattr(args, name) for name in fields if hasattr(args, name)})
    results = run_experiment(args.output, settings, args.device)
    snr = ", ".join(
        f"layer {layer}: {before:.2f} -> {after:.2f}"
        for layer, before, after in zip(
            results["layers"], results["snr_before_finetuning"], results["snr_after_finetuning"]
        )
    )
    print(
        f"test accuracy {results['test_accuracy']:.3f} after {results['steps_trained']} steps "
        f"({results['train_seconds']:.0f} s); motif SNR per layer (before -> after fine-tuning): {snr}"
    )
    print(f"written to {args.output}: {', '.join(results['files'])}")
