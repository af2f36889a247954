"""The Gradio Space app: started on loopback over release folders, queried through gradio_client."""

import importlib.util
import os
import socket
from pathlib import Path

import pytest
import torch

from nucel import NucELConfig, NucELForSequenceClassification, NucELGenerator, NucELModel
from nucel.core.models import save_model_folder
from nucel.model_cards.render import CardFacts
from nucel.modeling_nucel.configuration_nucel import BASES
from nucel.release import build_release_folder

gradio_client = pytest.importorskip(
    "gradio_client", reason="the Space test needs gradio and gradio_client (the `space` extra)"
)
pytest.importorskip("gradio", reason="the Space test needs gradio and gradio_client (the `space` extra)")

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
LABELS = ["non-promoter", "promoter"]
MASKED = "ACGTTGCATTAGGCacgt[MASK]GCATTAGGCACGTNGCA"
SEQUENCE = "AGGTTAAATAGGGGTTGAGATATGATGCTCAGGAGAAGCGCTTTCTTTCGCGAGCACCCTGAACCAGACC"


def load_app():
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    spec = importlib.util.spec_from_file_location("nucel_space_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_space_answers_fill_mask_embedding_and_classification_requests(tmp_path, tokenizer):
    generator = NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)).eval()
    encoder = NucELModel(NucELConfig.from_preset("tiny")).eval()
    classifier = NucELForSequenceClassification(NucELConfig.from_preset("tiny", num_labels=2)).eval()
    facts = CardFacts(base_model="nucel-test/nucel-tiny")
    folders = {}
    for name, model in (("generator", generator), ("encoder", encoder), ("classifier", classifier)):
        save_model_folder(model, tmp_path / "trained" / name)
        folders[name] = str(
            build_release_folder(
                tmp_path / "trained" / name,
                f"nucel-test/{name}",
                tmp_path / name,
                facts=facts,
                label_names=LABELS if name == "classifier" else None,
            )
        )

    app = load_app()
    demo = app.build_demo(app.NucELServer(**folders))
    port = free_loopback_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(
            f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False, download_files=False
        )
        filled = client.predict(MASKED, api_name="/fill_mask")
        classified = client.predict(SEQUENCE, api_name="/classify")
        embedded = client.predict(SEQUENCE, "mean", api_name="/embed")
        with pytest.raises(Exception, match="'X' at position 3"):
            client.predict("ACXGT", api_name="/classify")
    finally:
        demo.close()

    # Reference answers computed here from the trained models themselves.
    with torch.no_grad():
        masked_ids = tokenizer(MASKED, return_tensors="pt")["input_ids"]
        mask_position = (masked_ids[0] == tokenizer.mask_token_id).nonzero().item()
        base_probabilities = generator(masked_ids).logits[0, mask_position].softmax(-1)
        sequence_ids = tokenizer(SEQUENCE, return_tensors="pt")["input_ids"]
        label_probabilities = classifier(sequence_ids).logits[0].softmax(-1)
        mean_embedding = encoder(sequence_ids).last_hidden_state[0].mean(0)

    fill_scores = {entry["label"]: entry["confidence"] for entry in filled["confidences"]}
    assert set(fill_scores) == set(BASES)
    for base, score in fill_scores.items():
        assert score == pytest.approx(base_probabilities[tokenizer.convert_tokens_to_ids(base)].item(), abs=1e-5)
    label_scores = {entry["label"]: entry["confidence"] for entry in classified["confidences"]}
    assert label_scores == pytest.approx(
        {label: label_probabilities[i].item() for i, label in enumerate(LABELS)}, abs=1e-5
    )
    assert classified["label"] == LABELS[int(label_probabilities.argmax())]
    assert embedded["dimension"] == 64 and embedded["bases"] == len(SEQUENCE)
    assert torch.allclose(torch.tensor(embedded["embedding"]), mean_embedding, atol=1e-5)
