"""A Gradio Space serving NucEL release folders: fill-mask, embeddings and sequence classification.

The Hub's serverless widgets run only native ModernBERT; this app runs each release with its own NucEL code
(`trust_remote_code=True`), so the generator's base restriction and everything else NucEL adds apply. It needs only
the packages in requirements.txt, not the nucel package. Models are Hub ids or local release folders:

    python space/app.py --generator owner/nucel-93m-generator --encoder owner/nucel-93m \\
        --classifier owner/nucel-promoter
    NUCEL_GENERATOR=... NUCEL_ENCODER=... NUCEL_CLASSIFIER=... python app.py     # on a Space: set these variables

Each tab appears only when its model is given. The functions behind the tabs are API endpoints too
(`/fill_mask`, `/embed`, `/classify`), callable with `gradio_client`.
"""

import argparse
import os
import re

import gradio as gr
import torch
from transformers import AutoModel, AutoTokenizer, pipeline

MODEL_VARIABLES = {"generator": "NUCEL_GENERATOR", "encoder": "NUCEL_ENCODER", "classifier": "NUCEL_CLASSIFIER"}
IUPAC_DNA = set("ACGTRYSWKMBDHVN")
MASK = "[MASK]"
EXAMPLE = "AGGTTAAATAGGGGTTGAGATATGATGCTCAGGAGAAGCGCTTTCTTTCGCGAGCACCCTGAACCAGACC"  # a core promoter (GUE)


def clean_dna(text: str, allow_mask: bool = False) -> str:
    """Upper-cased sequence without whitespace; anything but IUPAC DNA (and [MASK] where allowed) is refused."""
    sequence = re.sub(r"\s+", "", text or "").upper()
    if not sequence:
        raise gr.Error("Enter a DNA sequence.")
    bases_only = sequence.replace(MASK, "") if allow_mask else sequence
    for position, character in enumerate(bases_only, start=1):
        if character not in IUPAC_DNA:
            raise gr.Error(f"'{character}' at position {position} is not a DNA base (A, C, G, T or an IUPAC code).")
    return sequence


class NucELServer:
    """The loaded models and one function per task, each taking and returning plain values."""

    def __init__(self, generator: str | None = None, encoder: str | None = None, classifier: str | None = None):
        self.fill_mask_pipeline = pipeline("fill-mask", model=generator, trust_remote_code=True) if generator else None
        self.classification_pipeline = (
            pipeline("text-classification", model=classifier, trust_remote_code=True) if classifier else None
        )
        if encoder:
            self.encoder_tokenizer = AutoTokenizer.from_pretrained(encoder)
            self.encoder = AutoModel.from_pretrained(encoder, trust_remote_code=True).eval()
        else:
            self.encoder = None

    def fill_mask(self, text: str) -> dict[str, float]:
        """Probability of each base at the one [MASK] position."""
        sequence = clean_dna(text, allow_mask=True)
        if sequence.count(MASK) != 1:
            raise gr.Error(f"Put exactly one {MASK} in the sequence (found {sequence.count(MASK)}).")
        predictions = self.fill_mask_pipeline(sequence, top_k=4)
        return {prediction["token_str"]: float(prediction["score"]) for prediction in predictions}

    def embed(self, text: str, pooling: str) -> dict:
        """One vector for the sequence: the [CLS] vector or the mean over all its tokens."""
        sequence = clean_dna(text)
        inputs = self.encoder_tokenizer(sequence, return_tensors="pt")
        with torch.no_grad():
            hidden = self.encoder(**inputs).last_hidden_state[0]
        vector = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
        return {"pooling": pooling, "bases": len(sequence), "dimension": vector.numel(), "embedding": vector.tolist()}

    def classify(self, text: str) -> dict[str, float]:
        """Probability of every label."""
        predictions = self.classification_pipeline(clean_dna(text), top_k=None)
        return {prediction["label"]: float(prediction["score"]) for prediction in predictions}


def build_demo(server: NucELServer) -> gr.Blocks:
    with gr.Blocks(title="NucEL") as demo:
        gr.Markdown(
            "# NucEL: a single-nucleotide DNA language model\nPaste DNA (A, C, G, T; N and lowercase are accepted)."
        )
        if server.fill_mask_pipeline is not None:
            with gr.Tab("Fill a masked base"):
                masked = gr.Textbox(label=f"Sequence with one {MASK}", value=EXAMPLE[:35] + MASK + EXAMPLE[36:])
                probabilities = gr.Label(label="Base probabilities", num_top_classes=4)
                gr.Button("Predict").click(server.fill_mask, masked, probabilities, api_name="fill_mask")
        if server.encoder is not None:
            with gr.Tab("Embed a sequence"):
                sequence = gr.Textbox(label="Sequence", value=EXAMPLE)
                pooling = gr.Radio(["cls", "mean"], value="cls", label="Pooling")
                embedding = gr.JSON(label="Embedding")
                gr.Button("Embed").click(server.embed, [sequence, pooling], embedding, api_name="embed")
        if server.classification_pipeline is not None:
            with gr.Tab("Classify a sequence"):
                sequence = gr.Textbox(label="Sequence", value=EXAMPLE)
                labels = gr.Label(label="Label probabilities")
                gr.Button("Classify").click(server.classify, sequence, labels, api_name="classify")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for role, variable in MODEL_VARIABLES.items():
        parser.add_argument(
            f"--{role}", default=os.environ.get(variable), help=f"Hub id or release folder (default: ${variable})"
        )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (a Space needs 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    args = parser.parse_args(argv)
    if not (args.generator or args.encoder or args.classifier):
        parser.error(
            f"give at least one model: --generator/--encoder/--classifier or {', '.join(MODEL_VARIABLES.values())}"
        )
    server = NucELServer(generator=args.generator, encoder=args.encoder, classifier=args.classifier)
    build_demo(server).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
