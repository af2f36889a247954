"""Shared fixtures. Tests never touch the network: the Hub is switched off before transformers is imported."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real benchmark data and genomes); tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data folder {SHARED_DATA} is absent (it sits beside the project on developer machines and CI)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer():
    from nucel.tokenization import build_tokenizer

    return build_tokenizer()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and far faster than on two busy shared cores: modules of tiny-model
    training use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """(generator, encoder): a tiny random generator (bases only) and encoder saved as NucEL model folders."""
    from nucel.core.models import save_model_folder
    from nucel.modeling_nucel import NucELConfig, NucELGenerator, NucELModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-models")
    generator = NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True))
    return save_model_folder(generator, root / "generator"), save_model_folder(
        NucELModel(NucELConfig.from_preset("tiny")), root / "encoder"
    )


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory) -> str:
    """A saved (random) tiny NucEL encoder standing in for a pre-trained checkpoint."""
    from nucel import NucELConfig, NucELModel
    from nucel.core.models import save_model_folder

    torch.manual_seed(0)
    return str(
        save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), tmp_path_factory.mktemp("base") / "nucel-tiny")
    )


@pytest.fixture(scope="module")
def gc_task():
    """(train, validation, test): random 32-mers labelled 1 where more than half are G or C, a task that a tiny
    model learns in a few fine-tuning steps."""
    import random

    from nucel.core.tables import Split

    def split(count: int, seed: int) -> Split:
        rng = random.Random(seed)
        sequences = ["".join(rng.choice("ACGT") for _ in range(32)) for _ in range(count)]
        labels = [int((s.count("G") + s.count("C")) / len(s) > 0.5) for s in sequences]
        return Split(sequences, labels, f"toy seed {seed}", "")

    return split(96, 1), split(32, 2), split(40, 3)
