"""The pre-training script and loop: learning on real DNA, the figures that tell whether it learned, exact resume,
two-process launch, exports, initialisation from a model folder, optimizer groups, configs."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file
from test_probe import gc_task_folder
from torch import nn

from nucel import NucELConfig, NucELModel
from nucel.core.options import ArgumentParser
from nucel.training.collator import PretrainingCollator
from nucel.training.pretraining_config import PretrainingConfig, load_config
from nucel.training.rtd_loop import build_model, initialise_from_checkpoints, parameter_groups, run_pretraining
from nucel.training.rtd_metrics import binary_entropy
from nucel.training.run_outputs import export_models
from nucel.training.train_rtd import SETTINGS, add_arguments

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "training" / "configs"
HUMAN = Path("pretrain") / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"


def small_settings(tmp_path: Path, **overrides) -> dict:
    """A tiny model on short crops of the built-in genome: a step takes a fraction of a second on a CPU."""
    settings = dict(
        objective="rtd",
        model_preset="tiny",
        fasta=["builtin"],
        builtin_genome_length=60_000,
        cache_dir=str(tmp_path / "cache"),
        window_length=164,
        window_overlap=36,
        min_window_length=64,
        validation_fraction=0.05,
        crop_length=64,
        seed=3,
        max_steps=6,
        per_device_batch_size=4,
        global_batch_size=8,
        learning_rate=2e-3,
        warmup_steps=2,
        output_dir=str(tmp_path / "run"),
        log_every=1,
        eval_every=3,
        eval_windows=8,
        save_every=3,
        keep_checkpoints=5,
        report_to="none",
    )
    settings.update(overrides)
    return settings


def read_log(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]


def training_lines(records: list[dict]) -> list[dict]:
    return [record for record in records if "loss" in record]


@pytest.fixture
def one_thread():
    """One torch thread for the long test: on a 2-core machine shared with other jobs, two OpenMP threads waiting on
    each other made a tiny-model step ~10× slower than one thread (measured on this project's 2-core machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_tiny_model_pretrains_on_human_dna(shared_data, tmp_path, one_thread):
    """240 steps of a tiny model on real human DNA (chr2:1-2,333,275): the losses fall and the generator learns.

    What this scale cannot show: the discriminator flagging replaced bases at the 0.5
    threshold. When the generator predicts a base about as well as the discriminator does, the posterior that a seen
    base was replaced is at most the masking rate (0.15), so an optimal discriminator flags nothing; on DNA, where
    most positions are unpredictable, a tiny discriminator does not get far enough ahead of its generator in a few
    hundred steps. The test checks that it reaches the prior-only loss and keeps original bases right.
    """
    config = PretrainingConfig(
        **small_settings(
            tmp_path,
            fasta=[str(shared_data / HUMAN)],
            window_length=228,
            window_overlap=100,
            min_window_length=128,
            crop_length=128,
            max_steps=240,
            per_device_batch_size=16,
            global_batch_size=16,
            learning_rate=3e-3,
            warmup_steps=30,
            log_every=20,
            eval_every=120,
            eval_windows=64,
            save_every=240,
            report_to="tensorboard",
        )
    )
    output_dir = run_pretraining(config)

    records = read_log(output_dir)
    assert records[0]["windows"]["train_windows"] > 10_000 and records[0]["windows"]["n_bases"] >= 10_000
    train = training_lines(records)
    assert [record["step"] for record in train] == list(range(20, 241, 20))
    first, last = train[0], train[-1]
    assert last["generator_loss"] < first["generator_loss"] - 0.1
    # Above the ~0.3 of always guessing the commonest base, at [MASK] positions (kept bases are visible, not counted).
    assert last["generator_accuracy"] > 0.31
    assert last["discriminator_loss"] < first["discriminator_loss"] - 0.03
    # The discriminator is at least as good as knowing the replaced rate (the loss of that prior-only classifier).
    assert last["discriminator_loss"] < binary_entropy(last["replaced_fraction"]) + 0.01
    assert last["information_gain"] > -0.01  # the same, as the figure the run reports
    assert last["discriminator_accuracy_original"] > 0.95
    assert 0.05 < last["replaced_fraction"] < 0.15 and 0.4 < last["masked_replaced_fraction"] < 0.9
    validation = [record for record in records if "validation_loss" in record]
    assert [record["step"] for record in validation] == [120, 240]
    assert validation[-1]["validation_generator_loss"] < first["generator_loss"]
    assert any((output_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_exports_load_through_the_auto_classes(tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    output_dir = run_pretraining(PretrainingConfig(**small_settings(tmp_path, max_steps=2, eval_every=2, save_every=2)))
    checkpoint = load_file(output_dir / "checkpoints" / "step-00000002" / "model.safetensors")
    discriminator = AutoModel.from_pretrained(output_dir / "export" / "discriminator", trust_remote_code=True)
    generator = AutoModelForMaskedLM.from_pretrained(output_dir / "export" / "generator", trust_remote_code=True)
    assert type(discriminator).__name__ == "NucELModel" and type(generator).__name__ == "NucELGenerator"
    assert discriminator.config.generator_config is None
    for name, tensor in discriminator.state_dict().items():
        assert torch.equal(tensor, checkpoint[f"model.{name}"]), name
    for name, tensor in generator.state_dict().items():
        assert torch.equal(tensor, checkpoint[f"generator.{name}"]), name
    tokenizer = AutoTokenizer.from_pretrained(output_dir / "export" / "generator")
    assert tokenizer("acgt")["input_ids"] == [2, 11, 12, 13, 14]  # the released ids and template


def test_a_run_logs_the_figures_that_tell_whether_it_learned(tmp_path, capsys, one_thread):
    probe_folder = gc_task_folder(tmp_path / "tasks" / "gc")
    settings = small_settings(
        tmp_path,
        max_steps=4,
        log_every=2,
        eval_every=4,
        save_every=4,
        probe_tasks=[str(probe_folder)],
        probe_every=4,
        probe_train_examples=40,
        probe_test_examples=30,
        eval_windows=100,
    )
    output_dir = run_pretraining(PretrainingConfig(**settings))
    records = read_log(output_dir)

    train = training_lines(records)
    assert [record["step"] for record in train] == [2, 4]
    for record in train:
        for name in ("auroc", "auroc_masked", "average_precision", "average_precision_masked"):
            assert 0 <= record[name] <= 1, name
        assert record["grad_norm_max"] >= record["grad_norm"] > 0
        # Every crop is 64 bases here, so the loss (a mean per batch) is also the mean per token that the gain uses.
        gain = binary_entropy(record["replaced_fraction"]) - record["discriminator_loss"]
        assert record["information_gain"] == pytest.approx(gain, abs=1e-5)
        assert record["information_gain_percent"] == pytest.approx(
            100 * gain / binary_entropy(record["replaced_fraction"]), abs=1e-3
        )
        assert "replaced_fraction" in record and "discriminator_accuracy_replaced" in record  # the earlier figures stay
    validation = [record for record in records if "validation_loss" in record]
    assert [record["step"] for record in validation] == [4]
    assert {"validation_information_gain", "validation_auroc", "validation_auroc_masked"} <= validation[0].keys()
    # The windows actually scored: eval_windows (100) asks for more than this small genome holds out.
    held_out = records[0]["windows"]["validation_windows"]
    assert held_out < 100 and validation[0]["validation_windows"] == held_out
    probes = [record for record in records if "probe_mcc/tasks/gc" in record]
    assert [record["step"] for record in probes] == [0, 4]  # step 0: the random-initialisation baseline

    assert (output_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "information gain, % of H(p)" in printed and "AUROC" in printed and "probe test MCC on tasks/gc" in printed
    assert "The discriminator learned" in printed and f"validation: {held_out} windows" in printed


def test_init_from_continues_from_an_exported_model(tmp_path):
    config = PretrainingConfig(**small_settings(tmp_path))
    earlier = build_model(config)  # stands for a trained model: weights no fresh initialisation gives
    with torch.no_grad():
        for parameter in earlier.parameters():
            parameter.add_(torch.randn_like(parameter))
    export_models(Accelerator(cpu=True), earlier, config, tmp_path / "export")
    # A learning rate of 0 leaves the weights where initialisation put them, so step 1's checkpoint shows them.
    run = run_pretraining(
        dataclasses.replace(
            config,
            max_steps=1,
            eval_every=1,
            save_every=1,
            learning_rate=0.0,
            warmup_steps=0,
            init_from=str(tmp_path / "export" / "discriminator"),
            init_generator_from=str(tmp_path / "export" / "generator"),
        )
    )
    initialised = load_file(run / "checkpoints" / "step-00000001" / "model.safetensors")
    exported = earlier.state_dict()
    for name, tensor in initialised.items():
        if name.startswith(("model.", "generator.")):
            assert torch.equal(tensor, exported[name]), name
    # The discriminator's RTD head is not part of the exported encoder: it starts afresh.
    assert any(not torch.equal(initialised[name], exported[name]) for name in initialised if name.startswith("rtd_"))

    bigger = dataclasses.replace(config, model_preset="small", init_from=str(tmp_path / "export" / "discriminator"))
    with pytest.raises(
        ValueError,
        match=r"init_from: .* does not fit .* 4 layers of width 64; choose the preset of that size \(model_preset\)",
    ):
        initialise_from_checkpoints(build_model(bigger), bigger)


def test_weight_decay_spares_norms_biases_and_embeddings():
    model = build_model(load_config("tiny_cpu"))
    decayed, spared = parameter_groups(model, weight_decay=0.01)
    assert decayed["weight_decay"] == 0.01 and spared["weight_decay"] == 0.0
    spared_ids = {id(p) for p in spared["params"]}
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters())) and spared_ids
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            sparing = isinstance(module, (nn.LayerNorm, nn.Embedding)) or name == "bias"
            assert (id(parameter) in spared_ids) == sparing, (type(module).__name__, name)
    assert id(model.model.embeddings.tok_embeddings.weight) in spared_ids
    assert id(model.model.layers[1].attn.Wqkv.weight) not in spared_ids


def test_gradient_checkpointing_and_attention_settings_keep_the_loss_and_gradients(tokenizer):
    plain = build_model(load_config("tiny_cpu")).train()
    variant = build_model(
        load_config("tiny_cpu", {"gradient_checkpointing": True, "attn_implementation": "eager"})
    ).train()
    variant.load_state_dict(plain.state_dict())
    assert {m.config._attn_implementation for m in variant.modules() if isinstance(m, NucELModel)} == {"eager"}

    # Counted inside the layer (checkpointing wraps its forward, not its hooks), where the layer's work starts.
    layer_calls = []
    variant.model.layers[0].attn.register_forward_pre_hook(lambda *args: layer_calls.append(1))
    batch = PretrainingCollator(tokenizer, mask_probability=0.3)(
        [
            {"sequence": "ACGTTGCAAC" * 9, "window_index": 0, "mask_seed": 1},
            {"sequence": "GATTACA" * 5, "window_index": 1, "mask_seed": 2},
        ]
    )
    batch.pop("window_index")
    losses = []
    for model in (plain, variant):
        torch.manual_seed(0)  # the same replacements for both
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss)
    assert len(layer_calls) == 2  # forward, then recomputed in the backward pass: checkpointing is on
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=0)
    for (name, expected), actual in zip(plain.named_parameters(), variant.parameters()):
        torch.testing.assert_close(actual.grad, expected.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_mlm_objective_trains_a_discriminator_sized_encoder(tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    output_dir = run_pretraining(
        PretrainingConfig(**small_settings(tmp_path, objective="mlm", max_steps=4, eval_every=4, save_every=4))
    )
    train = training_lines(read_log(output_dir))
    assert [record["step"] for record in train] == [1, 2, 3, 4]
    assert "discriminator_loss" not in train[-1] and 0 <= train[-1]["generator_accuracy"] <= 1
    encoder = AutoModel.from_pretrained(output_dir / "export" / "encoder", trust_remote_code=True)
    masked_lm = AutoModelForMaskedLM.from_pretrained(output_dir / "export" / "masked_lm", trust_remote_code=True)
    assert encoder.config.hidden_size == masked_lm.config.hidden_size == 64  # the tiny discriminator's width
    assert encoder.config.num_hidden_layers == 4
    assert (output_dir / "curves.png").is_file()  # every run draws its curves, MLM too


RECIPE_LEVERS = {  # a schedule of the sampling temperature crosses the interruption too
    "embedding_sharing": "tied",
    "disallow_correct": True,
    "generator_preset": "tiny-generator-1x16",
    "sampling_temperature_start": 3.0,
    "sampling_temperature_anneal_steps": 5,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "levers", [{}, RECIPE_LEVERS, {"replacement": "uniform"}], ids=["default", "levers", "uniform"]
)
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, levers):
    # Gradient accumulation (8 = 4 × 2) and a warm-up schedule are both in play across the interruption.
    config = PretrainingConfig(**small_settings(tmp_path, output_dir=str(tmp_path / "uninterrupted"), **levers))
    run_pretraining(config)

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(
        tmp_path / "uninterrupted" / "checkpoints" / "step-00000003", resumed_dir / "checkpoints" / "step-00000003"
    )
    run_pretraining(dataclasses.replace(config, output_dir=str(resumed_dir)), resume="latest")

    expected = load_file(tmp_path / "uninterrupted" / "checkpoints" / "step-00000006" / "model.safetensors")
    resumed = load_file(resumed_dir / "checkpoints" / "step-00000006" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    assert max((expected[name] - resumed[name]).abs().max().item() for name in expected) <= 1e-6
    # The weights moved after the checkpoint, so equality is not the trivial one.
    at_step_3 = load_file(resumed_dir / "checkpoints" / "step-00000003" / "model.safetensors")
    assert any(not torch.equal(at_step_3[name], resumed[name]) for name in resumed)
    figures = ("loss", "information_gain", "auroc", "grad_norm")
    uninterrupted_figures = {
        r["step"]: [r[name] for name in figures] for r in training_lines(read_log(tmp_path / "uninterrupted"))
    }
    resumed_figures = {r["step"]: [r[name] for name in figures] for r in training_lines(read_log(resumed_dir))}
    assert resumed_figures == {step: uninterrupted_figures[step] for step in (4, 5, 6)}


def test_checkpoints_are_complete_and_only_the_last_k_are_kept(tmp_path):
    output_dir = run_pretraining(
        PretrainingConfig(**small_settings(tmp_path, max_steps=4, save_every=1, keep_checkpoints=2, eval_every=4))
    )
    folders = sorted(path.name for path in (output_dir / "checkpoints").iterdir())
    assert folders == ["step-00000003", "step-00000004"]  # and no staging folder left behind
    for name in folders:
        state = json.loads((output_dir / "checkpoints" / name / "trainer_state.json").read_text())
        assert state["step"] == int(name.split("-")[1])
        assert (output_dir / "checkpoints" / name / "model.safetensors").is_file()


RANK_WINDOWS_SCRIPT = """
import json, sys
from accelerate import Accelerator
from accelerate.utils import gather_object
from nucel.tokenization import build_tokenizer
from nucel.training.collator import PretrainingCollator
from nucel.training.pretraining_config import load_config
from nucel.training.rtd_loop import build_train_loader, load_genome

accelerator = Accelerator(cpu=True)
config = load_config(sys.argv[1])
with accelerator.main_process_first():
    genome = load_genome(config)
batches = iter(build_train_loader(genome, config, accelerator, PretrainingCollator(build_tokenizer())))
seen = [next(batches)["window_index"].tolist() for _ in range(4)]
everyone = gather_object([seen])
if accelerator.is_main_process:
    open(sys.argv[2], "w").write(json.dumps(everyone))
accelerator.end_training()  # destroys the gloo group: exiting with it alive can abort the process
"""


@pytest.mark.slow
def test_two_process_cpu_launch(tmp_path):
    config_path = tmp_path / "two_processes.yaml"
    settings = small_settings(
        tmp_path,
        max_steps=4,
        per_device_batch_size=2,
        global_batch_size=8,
        save_every=2,
        keep_checkpoints=1,
        eval_every=4,
        probe_tasks=[str(gc_task_folder(tmp_path / "tasks" / "gc"))],
        probe_every=4,
        probe_train_examples=20,
        probe_test_examples=20,
    )
    config_path.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # accelerate 1.x's `--cpu` launcher starts one process (several only through mpirun); `--multi_gpu` starts them
    # with torchrun, and the script, finding no GPU, joins them in a gloo group on the CPU.
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]

    script = tmp_path / "rank_windows.py"
    script.write_text(RANK_WINDOWS_SCRIPT)
    result = subprocess.run(
        [*launch, str(script), str(config_path), str(tmp_path / "windows.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = json.loads((tmp_path / "windows.json").read_text())
    for batch0, batch1 in zip(rank0, rank1):
        assert len(batch0) == len(batch1) == 2 and not set(batch0) & set(batch1)

    result = subprocess.run(
        [*launch, str(REPO_ROOT / "training" / "train_rtd.py"), "--config", str(config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output_dir = Path(settings["output_dir"])
    records = read_log(output_dir)
    assert records[0]["num_processes"] == 2 and records[0]["gradient_accumulation_steps"] == 2
    assert [record["step"] for record in training_lines(records)] == [1, 2, 3, 4]  # each step logged once, not per rank
    assert [record["step"] for record in records if "probe_mcc/tasks/gc" in record] == [0, 4]  # probed by one rank
    validation = [record for record in records if "validation_auroc" in record]  # scores gathered from both ranks
    assert len(validation) == 1 and 0 <= validation[0]["validation_auroc"] <= 1
    assert sorted(path.name for path in (output_dir / "checkpoints").iterdir()) == ["step-00000004"]
    checkpoint = output_dir / "checkpoints" / "step-00000004"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    exported = sorted(path.name for path in (output_dir / "export").iterdir())
    assert exported == ["discriminator", "discriminator_rtd", "generator"]
    assert result.stdout.count("exported the trained models") == 1


def test_configs_and_command_line_overrides(tmp_path):
    paper = load_config(CONFIGS / "nucel_93m.yaml")
    assert (paper.objective, paper.model_preset, paper.learning_rate, paper.adam_beta1, paper.adam_beta2) == (
        "rtd",
        "nucel-93m",
        1e-4,
        0.9,
        0.999,
    )
    assert (paper.warmup_steps, paper.max_grad_norm, paper.global_batch_size, paper.mixed_precision) == (
        1000,
        1.0,
        192,
        "fp16",
    )
    assert (paper.window_length, paper.window_overlap, paper.crop_length, paper.epochs, paper.discriminator_weight) == (
        1224,
        100,
        1024,
        50,
        50.0,
    )
    author = load_config("nucel_93m_author")  # the author's released recipe (RNAELECTRA), beside the paper's
    assert (author.mask_token_fraction, author.sampling_temperature, author.sampling_top_k) == (1.0, 0.9, 2)
    assert (author.lr_scheduler, author.warmup_steps, author.weight_decay, author.max_grad_norm) == (
        "constant_with_warmup",
        1000,
        3e-7,
        1.0,
    )
    assert (author.norm_eps, author.global_batch_size, author.mixed_precision, author.learning_rate) == (
        1e-12,
        512,
        "bf16",
        1e-4,
    )
    model_config = build_model(load_config("nucel_93m_author", {"model_preset": "tiny"})).config
    assert model_config.norm_eps == model_config.generator_configuration().norm_eps == 1e-12
    assert (model_config.sampling_temperature, model_config.sampling_top_k) == (0.9, 2)
    tiny = load_config(CONFIGS / "tiny_cpu.yaml")
    assert load_config("tiny_cpu") == tiny  # shipped configs by name, for installed packages
    assert tiny.fasta == ["builtin"] and tiny.model_preset == "tiny" and tiny.max_steps
    assert tiny.skip_contigs == ["_alt", "_random", "chrUn", "EBV", "_fix", "_decoy", "HLA-"] and tiny.probe_tasks == []
    small = NucELConfig.for_pretraining("small")  # the CPU-study preset and its paired generator
    assert (small.num_hidden_layers, small.hidden_size) == (6, 128)
    assert (small.generator_configuration().num_hidden_layers, small.generator_configuration().hidden_size) == (3, 64)
    weak = build_model(load_config("tiny_cpu", {"generator_preset": "tiny-generator-1x16"})).generator.config
    assert (weak.num_hidden_layers, weak.hidden_size, weak.num_attention_heads) == (1, 16, 1)

    args = vars(
        build_parser().parse_args(
            [
                "--config",
                "x.yaml",
                "--max_steps",
                "7",
                "--fasta",
                "a.fa",
                "b.fa.gz",
                "--no-random_strand",
                "--learning_rate",
                "3e-4",
                "--resume",
            ]
        )
    )
    assert args["resume"] == "latest" and args["max_steps"] == 7 and args["fasta"] == ["a.fa", "b.fa.gz"]
    overridden = load_config(CONFIGS / "tiny_cpu.yaml", {name: args[name] for name in SETTINGS})
    assert (overridden.max_steps, overridden.fasta, overridden.random_strand, overridden.learning_rate) == (
        7,
        ["a.fa", "b.fa.gz"],
        False,
        3e-4,
    )
    assert overridden.window_length == tiny.window_length  # untouched settings keep the file's values
    args = vars(
        build_parser().parse_args(
            [
                "--skip_contigs",
                "--probe_tasks",
                "a/0",
                "b/1",
                "--gradient_checkpointing",
                "--init_from",
                "runs/x/export/discriminator",
            ]
        )
    )
    assert args["skip_contigs"] == [] and args["probe_tasks"] == ["a/0", "b/1"]  # a bare --skip_contigs: no filter
    assert args["gradient_checkpointing"] is True and args["init_from"] == "runs/x/export/discriminator"
    # Every NucEL command spells options with hyphens; the YAML keys' underscore spellings above stay aliases.
    hyphens = vars(
        build_parser().parse_args(
            ["--max-steps", "7", "--no-random-strand", "--learning-rate", "3e-4", "--skip-contigs", "--export-only"]
        )
    )
    assert {
        key: hyphens[key] for key in ("max_steps", "random_strand", "learning_rate", "skip_contigs", "export_only")
    } == {"max_steps": 7, "random_strand": False, "learning_rate": 3e-4, "skip_contigs": [], "export_only": True}

    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 5\nfasta: builtin\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        load_config(bad)
    with pytest.raises(ValueError, match="set max_steps or epochs"):
        load_config(None, {"fasta": "builtin"})
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        load_config("tiny_cpu", {"attn_implementation": "flash"})
    with pytest.raises(ValueError, match="init_generator_from is for objective rtd"):
        load_config("tiny_cpu", {"objective": "mlm", "init_generator_from": "gen"})
    assert load_config(CONFIGS / "nucel_93m.yaml", {"max_steps": 3}).max_steps == 3  # wins over the file's epochs


def build_parser() -> ArgumentParser:
    """`nucel pretrain`'s options (the same parser `accelerate launch training/train_rtd.py` reads)."""
    parser = ArgumentParser()
    add_arguments(parser)
    return parser


@pytest.mark.slow
def test_compiled_layers_train_as_the_eager_model(tmp_path):
    eager = run_pretraining(
        PretrainingConfig(**small_settings(tmp_path / "eager", max_steps=3, eval_every=3, save_every=3))
    )
    compiled = run_pretraining(
        PretrainingConfig(
            **small_settings(tmp_path / "compiled", max_steps=3, eval_every=3, save_every=3, compile=True)
        )
    )
    for ours, reference in zip(training_lines(read_log(compiled)), training_lines(read_log(eager)), strict=True):
        assert ours["step"] == reference["step"]
        assert abs(ours["loss"] - reference["loss"]) < 1e-3 * reference["loss"]


def test_a_new_run_never_mixes_with_an_earlier_one(tmp_path, capsys):
    """A fresh run in a folder that holds one would append to its log.jsonl: refused, or started over with
    --overwrite; --resume continues it (tested above)."""
    from nucel.training.train_rtd import clear_earlier_run, main

    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000005").mkdir(parents=True)
    (run / "log.jsonl").write_text('{"step": 5}\n')
    argv = ["--config", "tiny_cpu", "--max-steps", "2", "--output-dir", str(run)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1
        and "holds a run (log.jsonl, checkpoints)" in error
        and "--resume" in error
        and "--overwrite" in error
    )
    assert (run / "log.jsonl").read_text() == '{"step": 5}\n'
    assert main([*argv, "--overwrite", "--resume"]) == 2  # one line: they contradict each other
    assert "--overwrite starts over and --resume continues" in capsys.readouterr().err
    (run / "notes.txt").write_text("mine")
    clear_earlier_run(run, overwrite=True)
    assert sorted(path.name for path in run.iterdir()) == ["notes.txt"]  # the run's outputs only, nothing else
    clear_earlier_run(tmp_path / "new", overwrite=False)  # nothing there: nothing to refuse


def test_settings_are_checked_and_the_renamed_strand_setting_still_reads(tmp_path):
    for bad in (
        {"max_steps": -1},
        {"max_steps": 0},
        {"global_batch_size": 0},
        {"learning_rate": -1e-3},
        {"crop_length": 0},
    ):
        with pytest.raises(ValueError, match="give at least 1|at least 0"):
            load_config("tiny_cpu", bad)
    old = tmp_path / "old.yaml"
    old.write_text(
        "fasta: builtin\nmax_steps: 3\nreverse_complement: false\n"
    )  # the setting's name before random_strand
    assert load_config(old).random_strand is False


def test_another_genome_is_scored_out_of_distribution_at_every_validation(tmp_path):
    """`ood_validation_fasta`: another species' genome, all held out, scored beside the run's own validation and
    recorded in the exported models' pretraining.json."""
    import random

    from nucel.core.records import read_pretraining_record

    rng = random.Random(5)
    other = tmp_path / "other.fa"
    other.write_text("".join(f">r{i}\n" + "".join(rng.choice("ACGT") for _ in range(2_000)) + "\n" for i in range(3)))
    settings = small_settings(
        tmp_path,
        max_steps=2,
        eval_every=2,
        save_every=2,
        ood_validation_fasta=[str(other)],
        validation_block_length=5_000,
    )
    output_dir = run_pretraining(PretrainingConfig(**settings))
    validation = [record for record in read_log(output_dir) if "ood_validation_loss" in record]
    assert [record["step"] for record in validation] == [2]
    assert {"ood_validation_information_gain_percent", "ood_validation_auroc"} <= validation[0].keys()
    record = read_pretraining_record(output_dir / "export" / "discriminator")
    assert record["ood_validation"]["step"] == 2 and record["validation"]["step"] == 2
