"""The pre-training loop behind `training/train_rtd.py`: replaced token detection (or plain MLM) with Accelerate.

One optimizer step = `global_batch_size` crops = `per_device_batch_size` × processes × gradient-accumulation steps.
Everything random is reproducible from the seed: the data a step sees is a function of (seed, step) (see
`genome.WindowBatchSampler` and `genome.GenomeCrops`), and the generator's sampling uses the torch RNG, whose state
`accelerator.save_state` stores with every checkpoint. Resuming from the checkpoint of step k therefore gives the
run an uninterrupted one would have had.

Outputs under `output_dir`:
    log.jsonl                 one JSON object per logging step, validation and probe (figures: training/rtd_metrics.py)
    tensorboard/              the same figures for TensorBoard (`report_to`)
    curves.png                losses, information gain, AUROC and probe MCC against the step (training/curves.py)
    checkpoints/step-XXXXXXXX accelerator.save_state + trainer_state.json, the last `keep_checkpoints` kept
    export/                   discriminator/ (NucELModel) and generator/ (NucELGenerator) with the tokenizer, and
                              discriminator_rtd/ (NucELForReplacedTokenDetection: the discriminator with its RTD head,
                              `model.*` its encoder, so AutoModel loads that folder as the encoder alone); whatever
                              `embedding_sharing` shared is folded into each model's own token table, and no config.json
                              carries the pre-training settings. Without a generator (`replacement: uniform`) there is
                              no generator/. For `objective: mlm`, encoder/ (NucELModel) and masked_lm/ (NucELGenerator)
"""

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_scheduler

from nucel.core.models import load_checked
from nucel.core.records import RUN_LOG, read_run_log
from nucel.modeling_nucel import NucELConfig, NucELForPreTraining, NucELGenerator, NucELModel
from nucel.tokenization import build_tokenizer
from nucel.training.builtin_genome import write_builtin_genome
from nucel.training.collator import PretrainingCollator
from nucel.training.curves import summary_text, write_curves
from nucel.training.genome import GenomeCrops, GenomeWindows, WindowBatchSampler, prepare_windows, validation_sample
from nucel.training.pretraining_config import BUILTIN, PretrainingConfig
from nucel.training.probe import load_probe_task, probe_figures
from nucel.training.rtd_metrics import MetricTally
from nucel.training.run_outputs import JsonLinesLog, export_models, find_checkpoint, save_checkpoint

# Config values that change what a network computes without changing its weights' shapes: `init_from` reports
# those in which a checkpoint differs from the run's model.
COMPUTATION_FIELDS = (
    "num_attention_heads",
    "hidden_activation",
    "norm_eps",
    "global_rope_theta",
    "local_rope_theta",
    "global_attn_every_n_layers",
    "local_attention",
)


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


def load_genome(config: PretrainingConfig, fasta: list[str] | None = None) -> GenomeWindows:
    """The windows of the run's genome, or of `fasta` (the out-of-distribution check's genome)."""
    cache_dir = Path(config.cache_dir).expanduser()
    files = [
        write_builtin_genome(cache_dir / "builtin_genome", config.builtin_genome_length)
        if name == BUILTIN
        else Path(name).expanduser()
        for name in (config.fasta if fasta is None else fasta)
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
            disallow_correct=config.disallow_correct,
            embedding_sharing=config.embedding_sharing,
            replacement=config.replacement,
            **architecture,
        )
        model = NucELForPreTraining(model_config)
    else:
        # The MLM baseline scores only the four bases, as the RTD generator does, so their accuracies compare.
        model = NucELGenerator(NucELConfig.from_preset(config.model_preset, restrict_to_bases=True, **architecture))
    set_attention_implementation(model, config.attn_implementation)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if config.compile:
        model.compile_layers()
    return model


def set_attention_implementation(model: nn.Module, implementation: str) -> None:
    """The generator and the discriminator each have a config of their own, and every NucEL module reads its
    config's `_attn_implementation` when called: set it on all of them."""
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.config._attn_implementation = implementation


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Checkpoint every encoder layer of generator and discriminator (transformers' API walks all sub-modules)."""
    # Non-reentrant checkpointing is PyTorch's recommendation and works under DDP without further settings.
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x; its old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def initialise_from_checkpoints(model, config: PretrainingConfig) -> list[str]:
    """Copy `init_from`'s encoder into the discriminator (the MLM baseline's encoder) and `init_generator_from`'s
    generator into the RTD generator. Returns a line per copy, saying what came from where and what differs."""
    copies = []
    if config.init_from:
        copies.append(("init_from", config.init_from, NucELModel, model.model))
    if config.init_generator_from:
        copies.append(("init_generator_from", config.init_generator_from, NucELGenerator, model.generator))
    return [copy_weights(setting, source, model_class, target) for setting, source, model_class, target in copies]


def copy_weights(setting: str, source: str, model_class, target: nn.Module) -> str:
    """Load `source` (a folder, or a Hub id) as `model_class` and copy its weights into `target`, whose weights
    must have the same names and shapes; returns what was copied and which computation settings differ."""
    folder = Path(source).expanduser()
    try:
        checkpoint = load_checked(model_class, str(folder) if folder.exists() else source, device="cpu")
    except (OSError, ValueError) as error:
        where = "" if folder.exists() else "no such folder here; as a Hub id: "
        raise ValueError(f"{setting}: cannot load {source} as a {model_class.__name__} ({where}{error})") from error
    loaded, expected = checkpoint.state_dict(), target.state_dict()
    missing, extra = sorted(expected.keys() - loaded.keys()), sorted(loaded.keys() - expected.keys())
    reshaped = [
        f"{name}: checkpoint {tuple(loaded[name].shape)}, model {tuple(expected[name].shape)}"
        for name in sorted(expected.keys() & loaded.keys())
        if loaded[name].shape != expected[name].shape
    ]
    if missing or extra or reshaped:
        kinds = (
            (missing, "weights missing from the checkpoint"),
            (extra, "weights the model lacks"),
            (reshaped, "of another shape"),
        )
        problems = "; ".join(f"{len(group)} {what} (e.g. {', '.join(group[:3])})" for group, what in kinds if group)
        preset_setting = "model_preset" if setting == "init_from" else "generator_preset"
        raise ValueError(
            f"{setting}: {source} does not fit this run's {model_class.__name__} ({problems}). The checkpoint has "
            f"{checkpoint.config.num_hidden_layers} layers of width {checkpoint.config.hidden_size}; choose the preset "
            f"of that size ({preset_setting})"
        )
    target.load_state_dict(loaded)
    differences = [
        f"{name} {getattr(checkpoint.config, name)!r} (run: {getattr(target.config, name)!r})"
        for name in COMPUTATION_FIELDS
        if getattr(checkpoint.config, name) != getattr(target.config, name)
    ]
    report = f"{setting}: {len(loaded)} weights copied from {source}"
    if differences:
        report += f"; its config differs in {', '.join(differences)}, and the run computes with its own values"
    return report


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups, as transformers' Trainer makes them: weight decay on the weight matrices only. LayerNorm
    gains, biases and embedding rows are not what decay is meant to keep small (a gain decayed towards 0 mutes its
    feature), so their group has none."""
    no_decay = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, (nn.LayerNorm, nn.Embedding)) or name == "bias":
                no_decay.add(id(parameter))
    parameters = list(model.parameters())
    return [
        {"params": [p for p in parameters if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in parameters if id(p) in no_decay], "weight_decay": 0.0},
    ]


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
    if resume is None:  # a resumed run takes every weight from its checkpoint
        for line in initialise_from_checkpoints(model, config):
            accelerator.print(line)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
    )
    # The scheduler stays outside `prepare` (which would step it once per process) and is stepped once per update.
    scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=max_steps
    )
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
    collator = PretrainingCollator(
        tokenizer, config.mask_probability, config.mask_token_fraction, config.random_token_fraction
    )
    train_loader = build_train_loader(genome, config, accelerator, collator, start_batch=start_step * accumulation)
    validation_loader = build_validation_loader(genome.validation, config, accelerator, collator)
    # Another species' genome, all of it held out: how far what was learned carries beyond the training genome.
    ood_loader = None
    if config.ood_validation_fasta:
        ood = load_genome(config, config.ood_validation_fasta)
        ood_loader = build_validation_loader(
            datasets.concatenate_datasets([ood.train, ood.validation]), config, accelerator, collator
        )
    # Every process reads the tasks, so that a bad folder stops them all; the main process probes.
    probe_tasks = [
        load_probe_task(folder, config.probe_train_examples, config.probe_test_examples, config.seed)
        for folder in config.probe_tasks
    ]

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    log = JsonLinesLog(output_dir / RUN_LOG, accelerator.is_main_process, start_step if resume is not None else None)
    if config.report_to != "none":
        accelerator.init_trackers(
            "tensorboard",
            config={k: str(v) if isinstance(v, list) or v is None else v for k, v in asdict(config).items()},
        )
    if start_step == 0:
        log.write(
            {
                "step": 0,
                "windows": asdict(genome.counts),
                "cache": str(genome.folder),
                "max_steps": max_steps,
                "gradient_accumulation_steps": accumulation,
                "num_processes": accelerator.num_processes,
            }
        )
        if config.probe_tasks:  # the random-initialisation baseline (or the init_from model's score)
            probe(accelerator, model, probe_tasks, log, step=0)

    tally = MetricTally(config.objective, accelerator.device, config.seed)
    progress = tqdm(
        total=max_steps, initial=start_step, disable=not accelerator.is_local_main_process, desc=config.objective
    )
    batches = iter(train_loader)
    training_seconds = 0.0  # time in training steps since the last log line, for tokens/s
    model.train()
    for step in range(start_step + 1, max_steps + 1):
        step_start = time.perf_counter()
        rtd = config.objective == "rtd"  # the step's generator sampling temperature: a schedule's, or the fixed one
        step_settings = {"sampling_temperature": config.sampling_temperature_at(step - 1)} if rtd else {}
        for micro_batch in range(accumulation):
            batch = to_device(next(batches), accelerator.device)
            # Gradients are all-reduced across processes only on the last micro-batch of the step.
            syncing = micro_batch == accumulation - 1
            with nullcontext() if syncing else accelerator.no_sync(model):
                output = model(**batch, **step_settings)
                accelerator.backward(output.loss / accumulation)
            tally.add(output, batch)
        tally.add_grad_norm(accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm))
        optimizer.step()
        if not optimizer.step_was_skipped:  # fp16 overflow: the update was skipped, the schedule waits too
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        training_seconds += time.perf_counter() - step_start
        progress.update(1)

        if step % config.log_every == 0 or step == max_steps:
            figures = tally.summary(accelerator)
            figures["tokens_per_second"] = figures.pop("tokens") / training_seconds
            figures.pop("sequences")
            figures["learning_rate"] = scheduler.get_last_lr()[0]
            if accelerator.scaler is not None:  # fp16: a scale that keeps falling means overflowing gradients
                figures["loss_scale"] = accelerator.scaler.get_scale()
            training_seconds = 0.0
            record_figures(accelerator, log, step, figures)
            progress.set_postfix(progress_figures(figures))
        if step % config.eval_every == 0 or step == max_steps:
            figures = evaluate(accelerator, model, validation_loader, config)
            record_figures(accelerator, log, step, {f"validation_{name}": value for name, value in figures.items()})
            if ood_loader is not None:
                figures = evaluate(accelerator, model, ood_loader, config)
                record_figures(
                    accelerator, log, step, {f"ood_validation_{name}": value for name, value in figures.items()}
                )
        if config.probe_tasks and (step % config.probe_every == 0 or step == max_steps):
            probe(accelerator, model, probe_tasks, log, step)
        if step % config.save_every == 0 or step == max_steps:
            save_checkpoint(accelerator, output_dir, step, config)
    progress.close()

    export_models(accelerator, model, config, output_dir / "export")
    report_run(accelerator, output_dir)
    accelerator.end_training()
    return output_dir


def to_device(batch: dict, device) -> dict:
    """The model's inputs of a collated batch on `device` (`window_index` is for tests and debugging only)."""
    return {name: tensor.to(device) for name, tensor in batch.items() if name != "window_index"}


def progress_figures(figures: dict) -> dict[str, str]:
    """What the progress bar shows: for RTD whether the discriminator learns more than the replaced rate."""
    if "information_gain_percent" in figures:
        return {
            "loss": f"{figures['loss']:.3f}",
            "gain": f"{figures['information_gain_percent']:.2f}%",
            "auroc": f"{figures['auroc']:.3f}",
        }
    return {"loss": f"{figures['loss']:.3f}", "generator_accuracy": f"{figures['generator_accuracy']:.3f}"}


def probe(accelerator: Accelerator, model, tasks: list, log: JsonLinesLog, step: int) -> None:
    """Probe the encoder on the main process (the others wait) and log the scores."""
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        # The discriminator as it computes (its shared embedding folded in), or the MLM baseline's encoder.
        encoder = trained.discriminator_for_export() if isinstance(trained, NucELForPreTraining) else trained.model
        record_figures(accelerator, log, step, probe_figures(encoder, build_tokenizer(), tasks))
    accelerator.wait_for_everyone()


def report_run(accelerator: Accelerator, output_dir: Path) -> None:
    """Print the run's summary and draw curves.png, both from log.jsonl (so a resumed run tells its whole story)."""
    if accelerator.is_main_process:
        records = read_run_log(output_dir)
        curves = write_curves(records, output_dir / "curves.png")
        print(f"summary of {output_dir} (every figure: log.jsonl; plotted: {curves.name})\n{summary_text(records)}")
    accelerator.wait_for_everyone()


def record_figures(accelerator: Accelerator, log: JsonLinesLog, step: int, figures: dict) -> None:
    log.write({"step": step, **figures})
    if accelerator.trackers:
        accelerator.log(figures, step=step)


def build_train_loader(
    genome: GenomeWindows, config: PretrainingConfig, accelerator: Accelerator, collator, start_batch: int = 0
):
    crops = GenomeCrops(genome.train, config.crop_length, config.seed, config.random_strand)
    sampler = WindowBatchSampler(
        len(genome.train),
        config.per_device_batch_size,
        config.seed,
        accelerator.num_processes,
        accelerator.process_index,
        start_batch,
    )
    # An explicit generator: otherwise each new iterator would draw its seed from the global torch RNG, which the
    # model's sampling uses, and a resumed run would drift from an uninterrupted one.
    return torch.utils.data.DataLoader(
        crops,
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )


def build_validation_loader(windows, config: PretrainingConfig, accelerator: Accelerator, collator):
    """The same crops of the same `eval_windows` of the held-out `windows` (all of them where there are fewer) every
    time, a seeded sample spread over every record (`validation_sample`), shared out between processes."""
    crops = GenomeCrops(windows, config.crop_length, config.seed, config.random_strand)
    keys = [(0, index) for index in validation_sample(len(windows), config.eval_windows, config.seed)]
    return torch.utils.data.DataLoader(
        crops,
        sampler=keys[accelerator.process_index :: accelerator.num_processes],
        batch_size=config.per_device_batch_size,
        collate_fn=collator,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )


@torch.no_grad()
def evaluate(accelerator: Accelerator, model, loader, config: PretrainingConfig) -> dict[str, float]:
    """Validation figures, `windows` the number of validation windows scored. The generator's sampling draws from a
    forked, fixed-seed RNG at `sampling_temperature`: every validation sees the same replacements, and training's
    random stream is left exactly where it was."""
    network = accelerator.unwrap_model(model)  # no DDP: processes may hold different numbers of batches
    network.eval()
    tally = MetricTally(config.objective, accelerator.device, config.seed)
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        for batch in loader:
            batch = to_device(batch, accelerator.device)
            with accelerator.autocast():
                tally.add(network(**batch), batch)
    network.train()
    figures = tally.summary(accelerator)
    figures.pop("tokens")
    figures["windows"] = figures.pop("sequences")
    return figures
