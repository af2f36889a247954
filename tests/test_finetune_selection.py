"""Fine-tuning's head setting, the linear probe, model selection that cannot silently fail, and one device per
process (no implicit DataParallel), with the tiny preset on CPU."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_finetune import quick_settings, validation_loss
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from nucel import NucELConfig
from nucel.cli import build_parser
from nucel.core.classifiers import load_finetuned, predict_logits
from nucel.core.models import save_model_folder
from nucel.core.tables import Split
from nucel.modeling_nucel import NucELForSequenceClassification
from nucel.modeling_nucel.modeling_nucel import NucELPredictionHead
from nucel.tokenization import build_tokenizer
from nucel.training import finetune as finetune_module
from nucel.training.finetune import build_classifier, finetune, training_arguments

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------ head and probe


def test_frozen_method_trains_exactly_one_linear_layer(base_folder):
    labels = ["a", "b", "c"]
    model = build_classifier(base_folder, quick_settings(label_names=labels, method="frozen"))
    hidden = model.config.hidden_size
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == hidden * len(labels) + len(labels)
    assert set(trainable) == {"classifier.weight", "classifier.bias"}
    assert quick_settings(method="frozen").head == "linear"  # unset, the probe's head is the linear one
    with pytest.raises(ValueError, match="'frozen' is a linear probe"):
        quick_settings(method="frozen", head="modernbert")
    with pytest.raises(ValueError, match="head must be one of"):
        quick_settings(head="mlp")


def test_head_defaults_keep_modernbert_for_full_and_lora(base_folder):
    assert quick_settings().head == quick_settings(method="lora").head == "modernbert"
    assert isinstance(build_classifier(base_folder, quick_settings()).head, NucELPredictionHead)
    linear = build_classifier(base_folder, quick_settings(head="linear"))
    assert isinstance(linear.head, torch.nn.Identity) and linear.config.classifier_head == "linear"
    # Only the output layer is new: everything else is the base checkpoint's encoder.
    hidden = linear.config.hidden_size
    assert (
        sum(p.numel() for p in linear.parameters())
        == sum(p.numel() for p in linear.model.parameters()) + hidden * 2 + 2
    )


@pytest.mark.parametrize("method", ["full", "lora"])
def test_linear_head_is_saved_and_rebuilt_for_prediction(method, base_folder, gc_task, tmp_path):
    train, validation, test = gc_task
    result = finetune(
        base_folder, train, validation, tmp_path / "model", quick_settings(method=method, head="linear"), test
    )
    model, tokenizer, metadata = load_finetuned(tmp_path / "model")
    assert metadata["head"] == "linear"
    assert np.allclose(predict_logits(model, tokenizer, test.sequences), result.test_logits, atol=1e-5)
    if method == "full":
        assert json.loads((tmp_path / "model" / "config.json").read_text())["classifier_head"] == "linear"
        assert not any(name.startswith("head.") for name in load_file(tmp_path / "model" / "model.safetensors"))
        auto = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model", trust_remote_code=True)
        assert isinstance(auto.head, torch.nn.Identity)
        assert np.allclose(predict_logits(auto, tokenizer, test.sequences), result.test_logits, atol=1e-5)
    else:
        saved = load_file(tmp_path / "model" / "adapter_model.safetensors")
        assert any(".classifier." in name for name in saved) and not any(".head." in name for name in saved)


def test_saved_classifier_without_the_head_key_loads_modernbert_head(tmp_path):
    """Folders saved before the head was a setting have no `classifier_head`: they keep ModernBERT's head."""
    model = build_classifier("random:tiny", quick_settings())
    save_model_folder(model, tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    del config["classifier_head"]
    config_path.write_text(json.dumps(config))
    reloaded = NucELForSequenceClassification.from_pretrained(tmp_path / "old")
    assert isinstance(reloaded.head, NucELPredictionHead)
    inputs = torch.tensor([[2, 11, 12, 13, 14, 3]])
    torch.testing.assert_close(reloaded(input_ids=inputs).logits, model.eval()(input_ids=inputs).logits)


def test_head_option_on_the_command_line(tmp_path):
    common = ["finetune", "--model", "random:tiny", "--train", "train.csv", "--output", str(tmp_path)]
    assert build_parser().parse_args([*common, "--head", "linear"]).head == "linear"
    assert build_parser().parse_args(common).head is None
    with pytest.raises(SystemExit):
        build_parser().parse_args([*common, "--head", "mlp"])


# ------------------------------------------------------------------------------------------------ model selection


def test_run_shorter_than_eval_steps_evaluates_and_selects_its_last_step(gc_task, tmp_path):
    train, validation, _ = gc_task
    result = finetune("random:tiny", train, validation, tmp_path / "model", quick_settings(max_steps=3, eval_steps=10))
    assert result.steps_trained == 3
    assert [entry["step"] for entry in result.validation_history] == [3]
    assert result.best_step == 3 and result.best_validation_loss == result.validation_history[0]["loss"]
    model, tokenizer, metadata = load_finetuned(tmp_path / "model")
    assert metadata["best_step"] == 3
    assert validation_loss(model, tokenizer, validation) == pytest.approx(result.best_validation_loss, abs=1e-4)


def test_last_step_is_evaluated_and_the_lowest_validation_loss_is_restored(base_folder, gc_task, tmp_path):
    train, validation, _ = gc_task
    # A learning rate that overshoots: the losses go up and down, so the best step is rarely the last one.
    result = finetune(
        base_folder,
        train,
        validation,
        tmp_path / "model",
        quick_settings(max_steps=7, eval_steps=2, learning_rate=2e-2),
    )
    steps = [entry["step"] for entry in result.validation_history]
    losses = [entry["loss"] for entry in result.validation_history]
    assert steps == [2, 4, 6, 7]
    assert result.best_validation_loss == min(losses) and result.best_step == steps[int(np.argmin(losses))]
    model, tokenizer, _ = load_finetuned(tmp_path / "model")
    # The weights saved (and returned) are the selected checkpoint's, not the last step's.
    assert validation_loss(model, tokenizer, validation) == pytest.approx(result.best_validation_loss, abs=1e-4)


def test_per_epoch_evaluation_scores_a_final_partial_epoch_once(gc_task, tmp_path):
    train, validation, _ = gc_task  # 96 rows, batch 16: 6 steps per epoch
    result = finetune(
        "random:tiny", train, validation, tmp_path / "model", quick_settings(max_steps=8, eval_steps=None)
    )
    assert [entry["step"] for entry in result.validation_history] == [6, 8]
    assert result.best_validation_loss == min(entry["loss"] for entry in result.validation_history)


def test_selection_that_restored_nothing_is_an_error():
    class State:
        best_model_checkpoint, best_metric, global_step = None, None, 5

    with pytest.raises(RuntimeError, match="no checkpoint was selected after 5 steps"):
        finetune_module.selected_checkpoint(State(), [])
    State.best_model_checkpoint, State.best_metric = "/tmp/run/checkpoint-4", 0.7
    with pytest.raises(RuntimeError, match="lowest validation loss was 0.5 at step 2"):
        finetune_module.selected_checkpoint(State(), [{"step": 2, "loss": 0.5}, {"step": 4, "loss": 0.7}])


# ------------------------------------------------------------------------------------------------ devices


@pytest.fixture
def two_gpus(monkeypatch):
    """torch reporting two CUDA devices, as on a multi-GPU machine started as one process (no GPU is touched:
    only device set-up runs). Accelerate's shared state is reset afterwards so no later test sees "CUDA"."""
    from accelerate.state import AcceleratorState

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_one_process_on_two_gpus_uses_one_device_and_the_settings_batch(two_gpus, tmp_path):
    plain = TrainingArguments(output_dir=str(tmp_path / "plain"), per_device_train_batch_size=16, report_to="none")
    assert plain.n_gpu == 2 and plain.train_batch_size == 32  # what the Trainer alone would do: DataParallel, batch × 2
    arguments = training_arguments(quick_settings(batch_size=16), str(tmp_path / "ours"))
    assert arguments.device.type == "cuda"
    assert arguments.n_gpu == 1 and arguments.train_batch_size == 16
    assert arguments.parallel_mode.name == "NOT_PARALLEL"


def test_trainer_does_not_wrap_the_model_in_dataparallel(tmp_path):
    arguments = training_arguments(quick_settings(), str(tmp_path))
    assert arguments.n_gpu == 0  # CPU
    arguments._n_gpu = 2  # what device set-up records on a two-GPU machine started as one process
    assert arguments.n_gpu == 1
    # Nothing is trained or evaluated: the evaluation set is there because the arguments ask for evaluations.
    trainer = Trainer(model=build_classifier("random:tiny", quick_settings()), args=arguments, eval_dataset=[{}])
    assert not isinstance(trainer._wrap_model(trainer.model), torch.nn.DataParallel)


def test_distributed_processes_share_the_settings_batch(monkeypatch, tmp_path):
    monkeypatch.setattr(finetune_module.OneDeviceArguments, "world_size", property(lambda self: 4))
    assert training_arguments(quick_settings(batch_size=32), str(tmp_path)).per_device_train_batch_size == 8
    with pytest.raises(ValueError, match="does not split evenly over 4 processes"):
        training_arguments(quick_settings(batch_size=30), str(tmp_path))


def test_auto_class_takes_the_head_as_a_keyword(base_folder):
    """`classifier_head` is a config field: `AutoModelForSequenceClassification.from_pretrained(encoder, …,
    classifier_head="linear")` on an encoder folder builds the paper's head (the model card's example)."""
    model = AutoModelForSequenceClassification.from_pretrained(
        base_folder, trust_remote_code=True, num_labels=2, classifier_head="linear"
    )
    assert isinstance(model.head, torch.nn.Identity) and model.config.classifier_head == "linear"
    with pytest.raises(ValueError, match="classifier_head must be one of"):
        NucELConfig.from_preset("tiny", classifier_head="mlp")


# ------------------------------------------------------------------------------------- patience after the plateau


def test_one_class_loss_is_the_cross_entropy_of_the_training_frequencies():
    from nucel.training.finetune import one_class_loss

    balanced = Split(["A"] * 4, [0, 1, 0, 1], "balanced", "")
    assert one_class_loss(balanced, balanced) == pytest.approx(np.log(2))
    skewed = Split(["A"] * 4, [0, 0, 0, 1], "skewed", "")  # prior 3/4, 1/4, scored on a balanced split
    assert one_class_loss(skewed, balanced) == pytest.approx(-(np.log(0.75) + np.log(0.25)) / 2)


class _State:
    def __init__(self):
        self.global_step = 0


class _Control:
    should_training_stop = False


def stopping_step(losses: list[float], patience_steps: int, plateau: float | None, every: int = 100) -> int | None:
    """Feed a validation loss every `every` steps; the step at which the callback stops training (None: never)."""
    from nucel.training.finetune import PatienceAfterPlateau

    callback, state, control = PatienceAfterPlateau(patience_steps, plateau), _State(), _Control()
    for index, loss in enumerate(losses, start=1):
        state.global_step = index * every
        callback.on_evaluate(None, state, control, metrics={"eval_loss": loss})
        if control.should_training_stop:
            return state.global_step
    return None


def test_patience_is_not_counted_on_the_plateau():
    plateau = float(np.log(2))
    # 30 validations on the plateau (the best of them early), then nothing: never stopped while on it
    assert stopping_step([0.6931] + [0.6932] * 29, 300, plateau) is None
    # leaves the plateau at step 1,200, improves until 1,400, then stalls: stops 300 steps after its best
    losses = [0.6931] * 11 + [0.66, 0.60, 0.58] + [0.59] * 10
    assert stopping_step(losses, 300, plateau) == 1700
    # without a plateau to leave (regression), patience counts from the start, as early stopping does
    assert stopping_step([0.5, 0.6, 0.6, 0.6], 300, None) == 400


def test_early_stopping_steps_replace_patience_in_validations():
    assert quick_settings(early_stopping_patience=5, early_stopping_steps=500).early_stopping_patience is None
    with pytest.raises(ValueError, match="early_stopping_steps must be at least 1"):
        quick_settings(early_stopping_steps=0)


def test_a_run_stopped_after_the_plateau_keeps_its_lowest_validation_loss(base_folder, gc_task):
    from nucel.training.finetune import PLATEAU_MARGIN, one_class_loss

    train, validation, _ = gc_task
    run_settings = quick_settings(max_steps=60, early_stopping_steps=4, learning_rate=5e-3)
    model = build_classifier(base_folder, run_settings)
    _, summary = finetune_module.train_with_selection(model, build_tokenizer(), train, validation, run_settings)
    losses = summary["validation_history"]
    lowest = min(losses, key=lambda entry: entry["loss"])
    assert summary["best_step"] == lowest["step"]
    assert summary["steps_trained"] < 60, "the toy task is learnt well before 60 steps: the run should stop early"
    # stopped only after leaving the plateau, and only 4 steps after its best validation
    assert lowest["loss"] < one_class_loss(train, validation) * (1 - PLATEAU_MARGIN)
    assert summary["steps_trained"] - summary["best_step"] == 4
