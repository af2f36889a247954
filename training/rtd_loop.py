"""The pre-training loop behind `training/train_rtd.py`: replaced token detection (or plain MLM) with Accelerate.

One optimizer step = `global_batch_size` crops = `per_device_batch_size` × processes × gradient-accumulation steps.
Everything random is reproducible from the seed: the data a step sees is a function of (seed, step) (see
`genome.WindowBatchSampler` and `genome.GenomeCrops`), and the generator's sampling uses the torch RNG, whose state
`accelerator.save_state` stores with every checkpoint. Resuming from the checkpoint of step k therefore gives the
run an uninterrupted one would have had.

Outputs under `output_dir`:
    log.jsonl                 one JSON object per logging step and per validation
    tensorboard/              the same figures for TensorBoard (`report_to`)
    checkpoints/step-XXXXXXXX accelerator.save_state + trainer_state.json, the last `keep_checkpoints` kept
    export/                   discriminator/ (NucELModel) and generator/ (NucELGenerator) with the tokenizer;
                              for `objective: mlm`, encoder/ (NucELModel) and masked_lm/ (NucELGenerator)
"""

import copy
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..folders import save_model_folder
from ..modeling_nucel import NucELConfig, NucELForPreTraining, NucELGenerator
from ..modeling_nucel.modeling_nucel import IGNORE_INDEX
from ..tokenization import build_tokenizer
from .builtin_genome import write_builtin_genome
from .collator import PretrainingCollator
from .genome import GenomeCrops, GenomeWindows, WindowBatchSampler, WindowSettings, prepare_windows

BUILTIN = "builtin"
CONFIG_FOLDER = Path(__file__).parent / "configs"
OBJECTIVES = ("rtd", "mlm")


@dataclass
class PretrainingConfig:
    """Every setting of a pre-training run; a YAML config sets any of them and the command line overrides those."""

    # What to train
    objective: str = "rtd"  # "rtd" (generator + discriminator) or "mlm" (a discriminator-sized encoder, plain MLM)
    model_preset: str = "nucel-93m"
    generator_preset: str | None = None  # None: the preset's paired generator
    discriminator_weight: float = 50.0
    sampling_temperature: float = 1.0  # RTD replacements ~ softmax(generator logits / temperature) over the bases
    sampling_top_k: int | None = None  # ... restricted to the k most likely bases (None: all four)
    norm_eps: float = 1e-5  # every LayerNorm's epsilon, generator and discriminator
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
    crop_length: int = 1024
    reverse_complement: bool = True
    mask_probability: float = 0.15
    mask_token_fraction: float = 0.85
    # Optimisation
    seed: int = 42
    max_steps: int | None = None  # wins over `epochs`, so that `--max_steps` overrides a config written in epochs
    epochs: float | None = None
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
    eval_windows: int = 512
    save_every: int = 1000
    keep_checkpoints: int = 3
    report_to: str = "tensorboard"  # an Accelerate tracker name, or "none"

    def __post_init__(self):
        if isinstance(self.fasta, str):
            self.fasta = [self.fasta]
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not self.fasta:
            raise ValueError("no genome given: set `fasta` to FASTA files (or to 'builtin' for the synthetic demo genome)")
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs (max_steps wins when both are set)")
        if self.crop_length > self.window_length:
            raise ValueError(f"crop_length {self.crop_length} is longer than window_length {self.window_length}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")

    def window_settings(self) -> WindowSettings:
        names = {field.name for field in fields(WindowSettings)}
        return WindowSettings(**{name: getattr(self, name) for name in names})


def config_path(name: str | Path) -> Path:
    """A YAML file, or the name of a config shipped with the package ("tiny_cpu", "nucel_93m")."""
    path = Path(name)
    if path.is_file():
        return path
    if (CONFIG_FOLDER / f"{name}.yaml").is_file():
        return CONFIG_FOLDER / f"{name}.yaml"
    shipped = sorted(config.stem for config in CONFIG_FOLDER.glob("*.yaml"))
    raise FileNotFoundError(f"{name}: no such config file, nor a shipped config (shipped: {shipped})")


def load_config(path: str | Path | None, overrides: dict | None = None) -> PretrainingConfig:
    """A YAML file's settings, then the overrides (e.g. from the command line), on top of the defaults."""
    values = {}
    if path is not None:
        path = config_path(path)
        values = yaml.safe_load(path.read_text()) or {}
        known = {field.name for field in fields(PretrainingConfig)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"{path}: unknown setting(s) {unknown}; known settings are {sorted(known)}")
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return PretrainingConfig(**values)


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


def load_genome(config: PretrainingConfig) -> GenomeWindows:
    cache_dir = Path(config.cache_dir).expanduser()
    files = [
        write_builtin_genome(cache_dir / "builtin_genome", config.builtin_genome_length) if name == BUILTIN else Path(name).expanduser()
        for name in config.fasta
    ]
    return prepare_windows(files, config.window_settings(), cache_dir / "genome_windows")


def build_model(config: PretrainingConfig):
    architecture = dict(norm_eps=config.norm_eps)
    if config.objective == "rtd":
        model_config = NucELConfig.for_pretraining(
            config.model_preset,
            config.generator_preset,
            generator_overrides=architecture,
            discriminator_weight=config.discriminator_weight,
            sampling_temperature=config.sampling_temperature,
            sampling_top_k=config.sampling_top_k,
            **architecture,
        )
        return NucELForPreTraining(model_config)
    # The MLM baseline scores only the four bases, as the RTD generator does, so their accuracies compare.
    return NucELGenerator(NucELConfig.from_preset(config.model_preset, restrict_to_bases=True, **architecture))


def gradient_accumulation_steps(config: PretrainingConfig, num_processes: int) -> int:
    per_step = config.per_device_batch_size * num_processes
    if config.global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size {config.global_batch_size} is not a multiple of per_device_batch_size "
            f"{config.per_device_batch_size} × {num_processes} processes"
        )
    return config.global_batch_size // per_step


def resolve_mixed_precision(requested: str, state: PartialState) -> str:
    """Mixed precision is for GPUs: on CPU fp16 is unsupported and bf16 is far slower than fp32."""
    if requested != "no" and state.device.type == "cpu":
        state.print(f"mixed_precision={requested!r} ignored: running on CPU, where training stays in fp32")
        return "no"
    return requested


class MetricTally:
    """Sums over micro-batches of the figures DESIGN.md section 4 asks to watch, reduced across processes on read.

    Accuracies are pooled counts (correct / total over the interval), not averages of per-batch ratios.
    """

    COUNTS = {
        "mlm": ("batches", "tokens", "loss", "masked", "generator_correct"),
        "rtd": (
            "batches", "tokens", "loss", "masked", "generator_correct", "generator_loss", "discriminator_loss",
            "replaced", "original", "replaced_detected", "original_detected",
        ),
    }

    def __init__(self, objective: str, device):
        self.objective = objective
        self.names = self.COUNTS[objective]
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)

    def add_counts(self, **values) -> None:
        for name, value in values.items():
            self.sums[self.names.index(name)] += value.detach().double() if torch.is_tensor(value) else value

    def add(self, output, batch) -> None:
        real_tokens = batch["attention_mask"].bool()
        self.add_counts(batches=1, tokens=real_tokens.sum(), loss=output.loss)
        if self.objective == "mlm":
            masked = batch["labels"] != IGNORE_INDEX
            correct = output.logits[masked].argmax(-1) == batch["labels"][masked]
            self.add_counts(masked=masked.sum(), generator_correct=correct.sum())
            return
        labels = batch["labels"][output.masked_positions]
        replaced = output.replaced_mask & real_tokens
        original = ~output.replaced_mask & real_tokens
        predicted_replaced = output.discriminator_logits > 0
        self.add_counts(
            generator_loss=output.generator_loss,
            discriminator_loss=output.discriminator_loss,
            masked=output.masked_positions.sum(),
            generator_correct=(output.generator_logits.argmax(-1) == labels).sum(),
            replaced=replaced.sum(),
            original=original.sum(),
            replaced_detected=(predicted_replaced & replaced).sum(),
            original_detected=(~predicted_replaced & original).sum(),
        )

    def summary(self, accelerator: Accelerator) -> dict[str, float]:
        """Interval figures over all processes; resets the tally."""
        total = dict(zip(self.names, accelerator.reduce(self.sums, reduction="sum").tolist()))
        self.sums = torch.zeros_like(self.sums)

        def ratio(numerator: str, denominator: str) -> float:
            return total[numerator] / total[denominator] if total[denominator] else float("nan")

        figures = {"loss": ratio("loss", "batches"), "generator_accuracy": ratio("generator_correct", "masked")}
        if self.objective == "rtd":
            figures.update(
                generator_loss=ratio("generator_loss", "batches"),
                discriminator_loss=ratio("discriminator_loss", "batches"),
                replaced_fraction=ratio("replaced", "tokens"),
                masked_replaced_fraction=ratio("replaced", "masked"),
                discriminator_accuracy_replaced=ratio("replaced_detected", "replaced"),
                discriminator_accuracy_original=ratio("original_detected", "original"),
            )
        figures["tokens"] = total["tokens"]
        return figures


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints, logs, exports


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (staging folders start with a dot and are never listed)."""
    folder = output_dir / "checkpoints"
    return sorted(folder.glob("step-*")) if folder.is_dir() else []


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, config: PretrainingConfig) -> None:
    """`save_state` into a staging folder (every process writes its part), then one rename by the main process."""
    final = output_dir / "checkpoints" / f"step-{step:08d}"
    staging = final.with_name(f".{final.name}.partial")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "trainer_state.json").write_text(json.dumps({"step": step, "config": asdict(config)}, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in checkpoint_folders(output_dir)[: -config.keep_checkpoints]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def find_checkpoint(output_dir: Path, resume: str) -> Path:
    """`resume` is "latest" (the newest checkpoint under output_dir) or a checkpoint folder."""
    if resume != "latest":
        checkpoint = Path(resume)
        if not (checkpoint / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{checkpoint}: not a checkpoint folder (no trainer_state.json)")
        return checkpoint
    checkpoints = checkpoint_folders(output_dir)
    if not checkpoints:
        raise FileNotFoundError(f"--resume: no checkpoint under {output_dir / 'checkpoints'}")
    return checkpoints[-1]


class JsonLinesLog:
    """log.jsonl, written by the main process only. A resumed run first drops the lines of steps after its
    checkpoint, so the file tells one consistent story."""

    def __init__(self, path: Path, enabled: bool, resumed_step: int | None):
        self.path = path
        self.enabled = enabled
        if enabled and resumed_step is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resumed_step]
            staging = path.with_name(f".{path.name}.partial")
            staging.write_text("".join(line + "\n" for line in kept))
            os.replace(staging, path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


def export_models(accelerator: Accelerator, model, config: PretrainingConfig, folder: Path) -> None:
    """The trained networks as model folders with the tokenizer, loadable through the Auto classes."""
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        tokenizer = build_tokenizer()
        if config.objective == "rtd":
            discriminator = copy.deepcopy(trained.model)
            discriminator.config.generator_config = None  # the released encoder does not carry the generator
            save_model_folder(discriminator, folder / "discriminator", tokenizer)
            save_model_folder(trained.generator, folder / "generator", tokenizer)
        else:
            save_model_folder(trained.model, folder / "encoder", tokenizer)
            save_model_folder(trained, folder / "masked_lm", tokenizer)
        print(f"exported the trained models to {folder}")
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------------------------
# The run


def run_pretraining(config: PretrainingConfig, resume: str | None = None, export_only: bool = False) -> Path:
    """Train (or, with `export_only`, only export a checkpoint) and return the output folder."""
    output_dir = Path(config.output_dir).expanduser()
    # Without a GPU, say so: processes started by torchrun (`accelerate launch --multi_gpu --num_processes 2` on a
    # CPU-only machine) then join one gloo group instead of each training alone.
    on_cpu = not (torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available())
    state = PartialState(cpu=on_cpu)
    accelerator = Accelerator(
        cpu=on_cpu,
        mixed_precision=resolve_mixed_precision(config.mixed_precision, state),
        log_with=None if config.report_to == "none" else config.report_to,
        project_dir=str(output_dir),
    )
    set_seed(config.seed)

    # The main process builds the window cache; the others wait and then find it.
    with accelerator.main_process_first():
        genome = load_genome(config)
    accelerator.print(f"genome windows ({genome.folder}): {genome.counts.describe()}")
    accumulation = gradient_accumulation_steps(config, accelerator.num_processes)
    batches_per_epoch = len(genome.train) // (config.per_device_batch_size * accelerator.num_processes)
    max_steps = config.max_steps or math.ceil(config.epochs * batches_per_epoch / accumulation)

    model = build_model(config)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
    )
    # The scheduler stays outside `prepare` (which would step it once per process) and is stepped once per update.
    scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    start_step = 0
    if resume is not None:
        checkpoint = find_checkpoint(output_dir, resume)
        accelerator.load_state(str(checkpoint))
        start_step = json.loads((checkpoint / "trainer_state.json").read_text())["step"]
        accelerator.print(f"resumed from {checkpoint} at step {start_step}")
    if export_only:
        export_models(accelerator, model, config, output_dir / "export")
        return output_dir

    tokenizer = build_tokenizer()
    collator = PretrainingCollator(tokenizer, config.mask_probability, config.mask_token_fraction)
    train_loader = build_train_loader(genome, config, accelerator, collator, start_batch=start_step * accumulation)
    validation_loader = build_validation_loader(genome, config, accelerator, collator)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    log = JsonLinesLog(output_dir / "log.jsonl", accelerator.is_main_process, start_step if resume is not None else None)
    if config.report_to != "none":
        accelerator.init_trackers("tensorboard", config={k: str(v) if isinstance(v, list) or v is None else v for k, v in asdict(config).items()})
    if start_step == 0:
        log.write({"step": 0, "windows": asdict(genome.counts), "cache": str(genome.folder), "max_steps": max_steps,
                   "gradient_accumulation_steps": accumulation, "num_processes": accelerator.num_processes})

    tally = MetricTally(config.objective, accelerator.device)
    progress = tqdm(total=max_steps, initial=start_step, disable=not accelerator.is_local_main_process, desc=config.objective)
    batches = iter(train_loader)
    training_seconds = 0.0  # time in training steps since the last log line, for tokens/s
    model.train()
    for step in range(start_step + 1, max_steps + 1):
        step_start = time.perf_counter()
        for micro_batch in range(accumulation):
            batch = next(batches)
            batch = {name: tensor.to(accelerator.device) for name, tensor in batch.items() if name != "window_index"}
            # Gradients are all-reduced across processes only on the last micro-batch of the step.
            syncing = micro_batch == accumulation - 1
            with nullcontext() if syncing else accelerator.no_sync(model):
                output = model(**batch)
                accelerator.backward(output.loss / accumulation)
            tally.add(output, batch)
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        if not optimizer.step_was_skipped:  # fp16 overflow: the update was skipped, the schedule waits too
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        training_seconds += time.perf_counter() - step_start
        progress.update(1)

        if step % config.log_every == 0 or step == max_steps:
            figures = tally.summary(accelerator)
            figures["tokens_per_second"] = figures.pop("tokens") / training_seconds
            figures["learning_rate"] = scheduler.get_last_lr()[0]
            training_seconds = 0.0
            record_figures(accelerator, log, step, figures)
            progress.set_postfix(loss=f"{figures['loss']:.3f}", generator_accuracy=f"{figures['generator_accuracy']:.3f}")
        if step % config.eval_every == 0 or step == max_steps:
            figures = evaluate(accelerator, model, validation_loader, config)
            record_figures(accelerator, log, step, {f"validation_{name}": value for name, value in figures.items()})
        if step % config.save_every == 0 or step == max_steps:
            save_checkpoint(accelerator, output_dir, step, config)
    progress.close()

    export_models(accelerator, model, config, output_dir / "export")
    accelerator.end_training()
    return output_dir


def record_figures(accelerator: Accelerator, log: JsonLinesLog, step: int, figures: dict) -> None:
    log.write({"step": step, **figures})
    if accelerator.trackers:
        accelerator.log(figures, step=step)


def build_train_loader(genome: GenomeWindows, config: PretrainingConfig, accelerator: Accelerator, collator, start_batch: int = 0):
    crops = GenomeCrops(genome.train, config.crop_length, config.seed, config.reverse_complement)
    sampler = WindowBatchSampler(
        len(genome.train), config.per_device_batch_size, config.seed,
        accelerator.num_processes, accelerator.process_index, start_batch,
    )
    # An explicit generator: otherwise each new iterator would draw its seed from the global torch RNG, which the
    # model's sampling uses, and a resumed run would drift from an uninterrupted one.
    return torch.utils.data.DataLoader(
        crops, batch_sampler=sampler, collate_fn=collator, num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )


def build_validation_loader(genome: GenomeWindows, config: PretrainingConfig, accelerator: Accelerator, collator):
    """The same crops of the first `eval_windows` validation windows every time, shared out between processes."""
    crops = GenomeCrops(genome.validation, config.crop_length, config.seed, config.reverse_complement)
    keys = [(0, index) for index in range(min(config.eval_windows, len(genome.validation)))]
    return torch.utils.data.DataLoader(
        crops, sampler=keys[accelerator.process_index :: accelerator.num_processes],
        batch_size=config.per_device_batch_size, collate_fn=collator, num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )


@torch.no_grad()
def evaluate(accelerator: Accelerator, model, loader, config: PretrainingConfig) -> dict[str, float]:
    """Validation figures. The generator's sampling draws from a forked, fixed-seed RNG: every validation sees the
    same replacements, and training's random stream is left exactly where it was."""
    network = accelerator.unwrap_model(model)  # no DDP: processes may hold different numbers of batches
    network.eval()
    tally = MetricTally(config.objective, accelerator.device)
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        for batch in loader:
            batch = {name: tensor.to(accelerator.device) for name, tensor in batch.items() if name != "window_index"}
            with accelerator.autocast():
                tally.add(network(**batch), batch)
    network.train()
    figures = tally.summary(accelerator)
    figures.pop("tokens")
    return figures
