"""Every setting of a pre-training run (`PretrainingConfig`, with the genome windowing's `WindowSettings`) and
how a YAML config and command-line overrides become one. Kept apart from the loop (training/rtd_loop.py) so that
reading settings, e.g. for `nucel pretrain --help`, does not import torch.
"""

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

BUILTIN = "builtin"
CONFIG_FOLDER = Path(__file__).parent / "configs"
OBJECTIVES = ("rtd", "mlm")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention")
EMBEDDING_SHARING = ("none", "tied", "gdes")  # as modeling_nucel's NucELForPreTraining knows them
REPLACEMENTS = ("generator", "uniform")
TEMPERATURE_SCHEDULES = ("linear", "cosine")
# Regular expressions (searched in a record's name) of the records that are not windowed by default: GRCh38's
# alternate haplotypes (chr1_KI270762v1_alt), unlocalised and unplaced scaffolds (chr1_KI270706v1_random,
# chrUn_GL000195v1), fix patches and decoys, the Epstein-Barr virus (chrEBV) and HLA alleles (HLA-A*01:01:01:01).
DEFAULT_SKIP_CONTIGS = ("_alt", "_random", "chrUn", "EBV", "_fix", "_decoy", "HLA-")


@dataclass(frozen=True)
class WindowSettings:
    """How genome FASTA becomes pre-training windows (training/genome.py)."""

    window_length: int = 1224
    window_overlap: int = 100
    # Runs of at least this many non-ACGT characters (N and other ambiguity codes) cut a record into pieces.
    split_at_n_run: int = 100
    # Windows with a larger fraction of non-ACGT characters than this are dropped ("mostly N").
    max_n_fraction: float = 0.5
    # Pieces shorter than this (record ends, DNA between two N runs) are dropped.
    min_window_length: int = 200
    # The share of every record held out for validation: its last `validation_fraction`, or with a block length,
    # blocks of that many bases spread along the record (every round(1 / validation_fraction)-th block).
    validation_fraction: float = 0.01
    validation_block_length: int = 0
    # Records whose name matches one of these regular expressions (re.search) are skipped; () windows every record.
    skip_contigs: tuple[str, ...] = DEFAULT_SKIP_CONTIGS

    def __post_init__(self):
        object.__setattr__(self, "skip_contigs", tuple(self.skip_contigs))  # a list from YAML; frozen and hashable
        for pattern in self.skip_contigs:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"skip_contigs: {pattern!r} is not a regular expression ({error})") from error
        if not 0 <= self.window_overlap < self.window_length:
            raise ValueError(f"window_overlap must be in [0, window_length), got {self.window_overlap}")
        if not 0 < self.min_window_length <= self.window_length:
            raise ValueError(f"min_window_length must be in (0, window_length], got {self.min_window_length}")
        if self.split_at_n_run < 1:
            raise ValueError(f"split_at_n_run must be at least 1, got {self.split_at_n_run}")
        if not 0 <= self.max_n_fraction <= 1:
            raise ValueError(f"max_n_fraction must be in [0, 1], got {self.max_n_fraction}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.validation_block_length < 0 or (self.validation_block_length and self.validation_fraction > 0.5):
            raise ValueError(
                f"validation_block_length {self.validation_block_length} needs a validation_fraction of at "
                f"most 0.5 (one block in every round(1 / fraction)), got {self.validation_fraction}"
            )

    @property
    def stride(self) -> int:
        return self.window_length - self.window_overlap

    def skips(self, record: str) -> bool:
        return any(re.search(pattern, record) for pattern in self.skip_contigs)


@dataclass
class PretrainingConfig:
    """Every setting of a pre-training run; a YAML config sets any of them and the command line overrides those."""

    # What to train
    objective: str = "rtd"  # "rtd" (generator + discriminator) or "mlm" (a discriminator-sized encoder, plain MLM)
    model_preset: str = "nucel-93m"
    generator_preset: str | None = None  # None: the preset's paired generator; any preset works (a weaker one too)
    discriminator_weight: float = 50.0
    sampling_temperature: float = 1.0  # RTD replacements ~ softmax(generator logits / temperature) over the bases
    sampling_top_k: int | None = None  # ... restricted to the k most likely bases (None: all four)
    # Fast-ELECTRA's schedule: the temperature starts here and goes to sampling_temperature over the anneal steps
    # (linear or cosine), then stays; None: sampling_temperature throughout. Validation samples at sampling_temperature.
    sampling_temperature_start: float | None = None  # the annealed schedule's first temperature (None: fixed)
    sampling_temperature_anneal_steps: int = 0
    sampling_temperature_schedule: str = "linear"
    disallow_correct: bool = False  # ELECTRA's: a replacement is never the original base, so p = the masked fraction
    # Token embeddings of generator and discriminator: "none" (each its own, the author's code), "tied" (ELECTRA's one
    # table) or "gdes" (DeBERTa-v3's gradient-disentangled sharing); see NucELForPreTraining. The exported models
    # hold whatever was shared in their own tables.
    embedding_sharing: str = "none"
    replacement: str = "generator"  # "uniform": the generator-free control, masked bases replaced by another at random
    norm_eps: float = 1e-5  # every LayerNorm's epsilon, generator and discriminator
    attn_implementation: str = "sdpa"  # one of ATTENTION_IMPLEMENTATIONS, for generator and discriminator
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more compute
    compile: bool = False  # torch.compile every encoder layer of generator and discriminator (compile_layers)
    # A model folder (export/discriminator or export/generator of an earlier run, an imported release) whose
    # encoder weights initialise the discriminator (for objective mlm, the encoder); shapes must match model_preset.
    init_from: str | None = None  # a model folder whose encoder weights initialise the discriminator
    init_generator_from: str | None = None  # a generator folder (export/generator) for the RTD generator
    # Data
    fasta: list[str] | None = None  # FASTA / FASTA.gz files; ["builtin"] for the synthetic demo genome
    builtin_genome_length: int = 2_000_000
    cache_dir: str = "~/.cache/nucel"
    # Windowing: flat here so YAML and the command line reach it; meanings and defaults are WindowSettings'.
    window_length: int = WindowSettings.window_length
    window_overlap: int = WindowSettings.window_overlap
    split_at_n_run: int = WindowSettings.split_at_n_run
    max_n_fraction: float = WindowSettings.max_n_fraction
    min_window_length: int = WindowSettings.min_window_length
    validation_fraction: float = WindowSettings.validation_fraction
    validation_block_length: int = WindowSettings.validation_block_length  # 0: the tail of each record
    # FASTA files of another genome (another species) scored at every validation as an out-of-distribution check
    # ("ood_validation_" figures), windowed as the training genome is.
    ood_validation_fasta: list[str] = field(default_factory=list)  # another species' FASTA, validation only
    skip_contigs: list[str] = field(default_factory=lambda: list(WindowSettings.skip_contigs))  # regexes; [] keeps all
    crop_length: int = 1024
    random_strand: bool = True  # each crop read from a random strand (reverse-complemented with probability 1/2)
    mask_probability: float = 0.15
    mask_token_fraction: float = 0.85  # of the selected bases, the fraction set to [MASK] ...
    random_token_fraction: float = 0.0  # ... and set to a random base (BERT's 80/10/10: 0.8 and 0.1); the rest kept
    # Optimisation
    seed: int = 42
    max_steps: int | None = None  # wins over `epochs`, so that `--max-steps` overrides a config written in epochs
    epochs: float | None = None  # passes over the training windows (max_steps wins)
    per_device_batch_size: int = 24
    global_batch_size: int = 192
    learning_rate: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.01
    lr_scheduler: str = "linear"  # any name transformers.get_scheduler knows
    warmup_steps: int = 1000
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # "fp16" / "bf16" apply on GPU; on CPU the run stays in fp32 and says so
    num_workers: int = 0
    # Output
    output_dir: str = "runs/nucel-pretraining"
    log_every: int = 10
    eval_every: int = 500
    eval_windows: int = 512  # a fixed sample spread over the validation windows of every record
    # Downstream probe: task folders (train.csv and test.csv or dev.csv; columns sequence,label, as GUE's), probed
    # at step 0 and every `probe_every` steps on `probe_train_examples` / `probe_test_examples` fixed examples.
    probe_tasks: list[str] = field(default_factory=list)  # task folders probed during pre-training
    probe_every: int = 1000
    probe_train_examples: int = 2000
    probe_test_examples: int = 1000
    save_every: int = 1000
    keep_checkpoints: int = 3
    report_to: str = "tensorboard"  # an Accelerate tracker name, or "none"

    def __post_init__(self):
        for name in ("fasta", "skip_contigs", "probe_tasks", "ood_validation_fasta"):
            if isinstance(getattr(self, name), str):  # one value in YAML
                setattr(self, name, [getattr(self, name)])
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attn_implementation!r}"
            )
        if self.init_generator_from and self.objective != "rtd":
            raise ValueError(
                "init_generator_from is for objective rtd (the MLM baseline has no generator); use init_from"
            )
        if min(self.log_every, self.eval_every, self.save_every, self.probe_every) < 1:
            raise ValueError("log_every, eval_every, save_every and probe_every must be at least 1")
        if not self.fasta:
            raise ValueError(
                "no genome given: set `fasta` to FASTA files (or to 'builtin' for the synthetic demo genome)"
            )
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs (max_steps wins when both are set)")
        counts = {
            name: getattr(self, name)
            for name in (
                "crop_length",
                "per_device_batch_size",
                "global_batch_size",
                "eval_windows",
                "keep_checkpoints",
                "builtin_genome_length",
            )
        }
        if self.max_steps is not None:
            counts["max_steps"] = self.max_steps
        if too_small := [f"{name} {value}" for name, value in counts.items() if value < 1]:
            raise ValueError(f"{', '.join(too_small)}: give at least 1")
        if (self.epochs is not None and self.epochs <= 0) or self.learning_rate < 0 or self.warmup_steps < 0:
            raise ValueError(
                f"epochs ({self.epochs}) must be positive, learning_rate ({self.learning_rate}) and "
                f"warmup_steps ({self.warmup_steps}) at least 0"
            )
        if self.crop_length > self.window_length:
            raise ValueError(f"crop_length {self.crop_length} is longer than window_length {self.window_length}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        check_mask_fractions(self.mask_probability, self.mask_token_fraction, self.random_token_fraction)
        self.check_rtd_settings()

    def check_rtd_settings(self) -> None:
        if self.embedding_sharing not in EMBEDDING_SHARING:
            raise ValueError(f"embedding_sharing must be one of {EMBEDDING_SHARING}, got {self.embedding_sharing!r}")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {self.replacement!r}")
        if self.replacement == "uniform" and self.embedding_sharing != "none":
            raise ValueError(
                "replacement 'uniform' runs no generator, whose embedding could be shared: embedding_sharing none"
            )
        if self.replacement == "uniform" and self.init_generator_from:
            raise ValueError("replacement 'uniform' runs no generator: leave out init_generator_from")
        # What a folder holds cannot go where a shared table lives: the discriminator's table is the generator's in
        # gdes (its own holds only the difference), and a tied generator has no table of its own.
        if self.init_from and self.embedding_sharing == "gdes":
            raise ValueError(
                "init_from with embedding_sharing gdes: the discriminator's table is the generator's; use none or tied"
            )
        if self.init_generator_from and self.embedding_sharing == "tied":
            raise ValueError(
                "init_generator_from with embedding_sharing tied: the generator has no table; use none or gdes"
            )
        if self.sampling_temperature_schedule not in TEMPERATURE_SCHEDULES:
            schedule = self.sampling_temperature_schedule
            raise ValueError(f"sampling_temperature_schedule must be one of {TEMPERATURE_SCHEDULES}, got {schedule!r}")
        for name in ("sampling_temperature", "sampling_temperature_start"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sampling_temperature_start is not None and self.sampling_temperature_anneal_steps < 1:
            raise ValueError("sampling_temperature_start needs sampling_temperature_anneal_steps of at least 1")

    def sampling_temperature_at(self, updates_done: int) -> float:
        """The generator's sampling temperature for the update after `updates_done` updates (0 for the first)."""
        if self.sampling_temperature_start is None:
            return self.sampling_temperature
        progress = min(updates_done / self.sampling_temperature_anneal_steps, 1.0)
        if self.sampling_temperature_schedule == "cosine":
            progress = (1 - math.cos(math.pi * progress)) / 2
        start, end = self.sampling_temperature_start, self.sampling_temperature
        return start + progress * (end - start)

    def window_settings(self) -> WindowSettings:
        names = {setting.name for setting in fields(WindowSettings)}
        return WindowSettings(**{name: getattr(self, name) for name in names})


def check_mask_fractions(mask_probability: float, mask_token_fraction: float, random_token_fraction: float) -> None:
    """One-line errors for masking fractions no masking can follow (training/masking.py)."""
    if not 0 < mask_probability < 1:
        raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}")
    if min(mask_token_fraction, random_token_fraction) < 0 or mask_token_fraction + random_token_fraction > 1:
        raise ValueError(
            f"mask_token_fraction {mask_token_fraction} and random_token_fraction {random_token_fraction} must be at "
            "least 0 and add up to at most 1 (the rest of the selected bases stay unchanged)"
        )


def config_path(name: str | Path) -> Path:
    """A YAML file, or the name of a config shipped with the package ("tiny_cpu", "nucel_93m")."""
    path = Path(name)
    if path.is_file():
        return path
    if (CONFIG_FOLDER / f"{name}.yaml").is_file():
        return CONFIG_FOLDER / f"{name}.yaml"
    shipped = sorted(config.stem for config in CONFIG_FOLDER.glob("*.yaml"))
    raise FileNotFoundError(f"{name}: no such config file, nor a shipped config (shipped: {shipped})")


# Settings renamed since configs were first written: the old key still reads, for one release.
RENAMED = {"reverse_complement": "random_strand"}  # `--reverse-complement` means strand averaging in `nucel embed`


def load_config(path: str | Path | None, overrides: dict | None = None) -> PretrainingConfig:
    """A YAML file's settings, then the overrides (e.g. from the command line), on top of the defaults."""
    values = {}
    if path is not None:
        path = config_path(path)
        values = yaml.safe_load(path.read_text()) or {}
        values = {RENAMED.get(key, key): value for key, value in values.items()}
        known = {setting.name for setting in fields(PretrainingConfig)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known settings are {sorted(known)}")
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return PretrainingConfig(**values)
