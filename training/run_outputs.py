"""What a pre-training run leaves in its folder: checkpoints (written atomically by every process, renamed by the
main one), `log.jsonl` (cut back to the checkpoint on resume), and the exported model folders with their records.
"""

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from accelerate import Accelerator

from nucel.core.files import write_text_atomically
from nucel.core.models import save_model_folder
from nucel.core.records import PRETRAINING_RECORD, pretraining_record
from nucel.tokenization import build_tokenizer
from nucel.training.pretraining_config import PretrainingConfig


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
        (staging / "trainer_state.json").write_text(
            json.dumps({"step": step, "config": asdict(config)}, indent=2) + "\n"
        )
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
            write_text_atomically(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")


def export_models(accelerator: Accelerator, model, config: PretrainingConfig, folder: Path) -> None:
    """The trained networks as model folders with the tokenizer, loadable through the Auto classes, each with its
    pre-training record (pretraining.json: recipe, data, steps, last figures; core/records.py)."""
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        tokenizer = build_tokenizer()
        run, settings = folder.parent, asdict(config)

        def export(network, part: str) -> None:
            record = pretraining_record(run, settings, part)
            save_model_folder(network, folder / part, tokenizer, records={PRETRAINING_RECORD: record})

        if config.objective == "rtd":
            export(trained.discriminator_for_export(), "discriminator")
            export(trained.replaced_token_detector_for_export(), "discriminator_rtd")
            if trained.generator is not None:
                export(trained.generator_for_export(), "generator")
        else:
            export(trained.model, "encoder")
            export(trained, "masked_lm")
        print(f"exported the trained models to {folder}")
    accelerator.wait_for_everyone()
