"""Embeddings from a NucEL encoder: one vector per sequence (pooled) or one vector per base.

    nucel embed MODEL sequences.fa -o embeddings.npy --pooling mean
    nucel embed MODEL sequences.fa -o per_base.parquet --per-base --reverse-complement

What the numbers are:
- `layer`: None (default) is the encoder's output (`last_hidden_state`, after the final norm), what
  `AutoModel` users get. An integer indexes `hidden_states` as transformers returns them: 0 is the embedding
  layer, i is the output of encoder layer i (before the final norm); negative integers count from the end.
- Pooling: "cls" is the [CLS] vector; "mean" and "max" run over the sequence's bases only ([CLS] and
  padding excluded), so a sequence's pooled vector does not depend on how it was split into windows.
- Per-base: exactly one vector per base of the input, row i = base i (0-based) of the sequence after
  whitespace is removed. Lowercase (soft-masked) bases and N (the [UNK] token) get their own rows like any base.
- Reverse-complement averaging: the reverse complement is embedded too and averaged in; per-base vectors of
  the reverse strand are flipped first, so row i of both strands describes the same base pair. A sequence and
  its reverse complement then get the same pooled vector, and per-base matrices that are each other's reverse.
- Long sequences: a sequence longer than `window` bases is cut into windows of exactly `window` bases that
  overlap by at least `overlap` bases (`window_spans`): they start at 0, step `window - overlap`, and the last
  one ends at the sequence's end. Each base takes its vector from one window, the one in which it lies farthest
  from a window edge (each overlap is split at its midpoint: `stitch_segments`), so every base is covered
  exactly once and has at least `overlap // 2` bases of context on each side inside its window. "mean"/"max"
  pool those stitched per-base vectors; "cls" is the average of the windows' [CLS] vectors.
- Work is batched by length (longest first) so that padding stays small.
"""

import argparse
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

from .folders import atomic_file
from .modeling_nucel import NucELModel
from .sequence_io import read_sequences
from .tokenization import TOKENS_BEFORE_BASES, load_tokenizer, reverse_complement, validate_dna, with_special_tokens

POOLINGS = ("cls", "mean", "max")
DEFAULT_WINDOW = 1024  # the pre-training crop length
DEFAULT_OVERLAP = 256


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checked(model_class, name_or_path: str, device: str | None = None):
    """`model_class.from_pretrained` in eval mode on `device`, refusing a checkpoint that lacks some of the
    model's weights (transformers would initialise them at random and go on: garbage scores, no error).
    Weights the class does not use (another task's head) are dropped silently."""
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load report lists those unused heads; they are expected
    try:
        model, info = model_class.from_pretrained(name_or_path, output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"])[:4])
        raise ValueError(f"{name_or_path} is not a {model_class.__name__} checkpoint: it has no weights for {missing}")
    return model.to(device or default_device()).eval()


def load_encoder(name_or_path: str, device: str | None = None):
    """The encoder (`NucELModel`) and tokenizer of any NucEL folder or Hub id: an encoder, a generator, a
    classifier or a pre-training checkpoint (its discriminator). Returned in eval mode on `device`."""
    return load_checked(NucELModel, name_or_path, device), load_tokenizer(name_or_path)


def base_token_ids(tokenizer, sequence: str, source: str | None = None) -> list[int]:
    """Token ids of a DNA string without specials: exactly one id per base (whitespace removed)."""
    sequence = validate_dna(sequence, source)
    ids = tokenizer(sequence, add_special_tokens=False)["input_ids"]
    if len(ids) != len(sequence):
        raise ValueError(f"the tokenizer gave {len(ids)} tokens for {len(sequence)} bases; a NucEL tokenizer gives one per base")
    return ids


def window_spans(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of the windows a sequence of `length` bases is cut into (see the module docstring)."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap}")
    if length <= window:
        return [(0, length)]
    step = window - overlap
    starts = list(range(0, length - window, step)) + [length - window]
    return [(start, start + window) for start in starts]


def stitch_segments(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each window of `window_spans`, the [start, end) of the bases it provides: the overlap of two
    consecutive windows is split at its midpoint. The segments partition [0, length)."""
    cuts = [spans[0][0]]
    for (_, previous_end), (next_start, _) in zip(spans, spans[1:]):
        cuts.append((next_start + previous_end + 1) // 2)
    cuts.append(spans[-1][1])
    return list(zip(cuts[:-1], cuts[1:]))


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input_ids and attention_mask for lists of token ids."""
    longest = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an out-of-memory shows up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def encode_batches(model, token_rows: list[list[int]], layer: int | None, batch_size: int, progress: bool, description: str):
    """Yield (row index, hidden states (length, hidden) as float32 numpy) for each row of token ids."""
    batches = length_sorted_batches([len(row) for row in token_rows], batch_size)
    device = next(model.parameters()).device
    for batch in tqdm(batches, desc=description, unit="batch", disable=not progress):
        input_ids, attention_mask = pad_batch([token_rows[i] for i in batch], model.config.pad_token_id)
        outputs = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            output_hidden_states=layer is not None,
        )
        hidden = outputs.last_hidden_state if layer is None else outputs.hidden_states[layer]
        hidden = hidden.float().cpu().numpy()
        for row, index in enumerate(batch):
            yield index, hidden[row, : len(token_rows[index])]


def embed_sequences(
    model,
    tokenizer,
    sequences: list[str],
    pooling: str | None = "mean",
    layer: int | None = None,
    reverse_complement_average: bool = False,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 16,
    progress: bool = True,
    sources: list[str] | None = None,
):
    """Embeddings of DNA strings (see the module docstring for what exactly is computed).

    `pooling` "cls" / "mean" / "max" returns an array (number of sequences, hidden size); `pooling=None`
    returns per-base embeddings, a list with one (sequence length, hidden size) array per sequence.
    `sources` (e.g. "file line 3") name the records in error messages.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or None (per-base), got {pooling!r}")
    depth = model.config.num_hidden_layers
    if layer is not None and not -(depth + 1) <= layer <= depth:
        raise ValueError(f"layer {layer} does not exist: this model has hidden states 0..{depth} (0 = embeddings)")
    strands = [False, True] if reverse_complement_average else [False]

    # One job per (sequence, strand, window): the tokens it runs on and the bases it provides.
    jobs, token_rows = [], []
    lengths = []
    for index, sequence in enumerate(sequences):
        source = sources[index] if sources else f"sequence {index + 1}"
        clean = validate_dna(sequence, source)
        lengths.append(len(clean))
        for reverse in strands:
            ids = base_token_ids(tokenizer, reverse_complement(clean) if reverse else clean, source)
            spans = window_spans(len(ids), window, overlap)
            for (start, end), (keep_start, keep_end) in zip(spans, stitch_segments(spans)):
                jobs.append((index, reverse, start, keep_start, keep_end))
                token_rows.append(with_special_tokens(ids[start:end]))

    # Stitched per-base vectors and [CLS] vectors, per (sequence, strand).
    hidden_size = model.config.hidden_size
    per_base = {(i, reverse): np.empty((lengths[i], hidden_size), np.float32) for i in range(len(sequences)) for reverse in strands}
    cls_vectors = {key: [] for key in per_base}
    for job_index, hidden in encode_batches(model, token_rows, layer, batch_size, progress, "embedding"):
        index, reverse, start, keep_start, keep_end = jobs[job_index]
        # Row 0 is [CLS]; base b of the window is row TOKENS_BEFORE_BASES + b - start.
        first = TOKENS_BEFORE_BASES - start
        per_base[index, reverse][keep_start:keep_end] = hidden[first + keep_start : first + keep_end]
        cls_vectors[index, reverse].append(hidden[0])

    def strand_embedding(index: int, reverse: bool) -> np.ndarray:
        bases = per_base[index, reverse][::-1] if reverse else per_base[index, reverse]  # back to forward order
        if pooling is None:
            return bases
        if pooling == "cls":
            return np.mean(cls_vectors[index, reverse], axis=0)
        return bases.mean(axis=0) if pooling == "mean" else bases.max(axis=0)

    embeddings = [np.mean([strand_embedding(i, reverse) for reverse in strands], axis=0) for i in range(len(sequences))]
    return embeddings if pooling is None else np.stack(embeddings)


# ----------------------------------------------------------------------------------------------------------------
# Output files


def ids_path(npy_path: str | Path) -> Path:
    """The id table written beside an embeddings .npy: embeddings.npy -> embeddings.ids.tsv."""
    npy_path = Path(npy_path)
    return npy_path.with_name(npy_path.name.removesuffix(".npy") + ".ids.tsv")


def write_embeddings(path: str | Path, ids: list[str], embeddings, sequences: list[str] | None = None) -> list[Path]:
    """Write pooled (array) or per-base (list of arrays) embeddings; returns the files written.

    - `.npy`: pooled -> (sequences, hidden) with `<name>.ids.tsv` (column `id`, one line per row);
      per-base -> all sequences' rows concatenated, (total bases, hidden), with `<name>.ids.tsv` giving each
      sequence's rows `start`..`end` (end exclusive).
    - `.parquet`: pooled -> columns `id`, `embedding`; per-base -> one row per base with `id`, `offset`
      (0-based position in the sequence), `base` (needs `sequences`) and `embedding`.
    """
    path = Path(path)
    per_base = isinstance(embeddings, list)
    if path.suffix == ".npy":
        with ExitStack() as stack:
            array_file = stack.enter_context(atomic_file(path))
            table_file = stack.enter_context(atomic_file(ids_path(path)))
            if per_base:
                ends = np.cumsum([len(e) for e in embeddings])
                lines = [f"{i}\t{end - len(e)}\t{end}" for i, e, end in zip(ids, embeddings, ends)]
                header = "id\tstart\tend"
                array = np.concatenate(embeddings)
            else:
                lines, header, array = list(ids), "id", embeddings
            with open(array_file, "wb") as handle:
                np.save(handle, array.astype(np.float32))
            table_file.write_text("\n".join([header, *lines]) + "\n")
        return [path, ids_path(path)]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if per_base:
            if sequences is None:
                raise ValueError("per-base parquet output needs the sequences (for the `base` column)")
            clean = [validate_dna(s) for s in sequences]
            columns = {
                "id": [i for i, e in zip(ids, embeddings) for _ in range(len(e))],
                "offset": np.concatenate([np.arange(len(e)) for e in embeddings]),
                "base": [base for sequence in clean for base in sequence],
            }
            array = np.concatenate(embeddings)
        else:
            columns, array = {"id": list(ids)}, np.asarray(embeddings)
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(array.astype(np.float32).ravel()), array.shape[1])
        with atomic_file(path) as staging:
            pq.write_table(pa.table(columns), staging)
        return [path]
    raise ValueError(f"{path}: the output must end in .npy or .parquet")


# ----------------------------------------------------------------------------------------------------------------
# Command line


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embeddings of sequences from a FASTA/CSV/TSV file",
        description="Per-sequence (pooled) or per-base embeddings from a NucEL encoder, written as .npy (+ .ids.tsv) or .parquet.",
    )
    parser.add_argument("model", help="NucEL model folder or Hub id (encoder, generator, classifier or pre-training checkpoint)")
    parser.add_argument("input", help="FASTA(.gz), CSV or TSV with a 'sequence' column")
    parser.add_argument("-o", "--output", required=True, help="output file: .npy or .parquet")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--pooling", choices=POOLINGS, default="mean", help="per-sequence pooling (default: mean over bases)")
    how.add_argument("--per-base", action="store_true", help="one vector per base instead of one per sequence")
    parser.add_argument("--layer", type=int, default=None, help="hidden_states index (0 = embeddings); default: the final output")
    parser.add_argument("--reverse-complement", action="store_true", help="average with the reverse complement strand")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="longest piece the model sees, in bases")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="overlap of consecutive windows, in bases")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-column", help="sequence column of a CSV/TSV (default: 'sequence' or 'seq')")
    parser.add_argument("--id-column", help="id column of a CSV/TSV (default: 'id', 'name' or 'sequence_id')")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    records = read_sequences(args.input, args.sequence_column, args.id_column)
    model, tokenizer = load_encoder(args.model, args.device)
    sequences = [record.sequence for record in records]
    embeddings = embed_sequences(
        model,
        tokenizer,
        sequences,
        pooling=None if args.per_base else args.pooling,
        layer=args.layer,
        reverse_complement_average=args.reverse_complement,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        sources=[record.source for record in records],
    )
    written = write_embeddings(args.output, [record.id for record in records], embeddings, sequences)
    print(f"{len(records)} sequences embedded -> {', '.join(map(str, written))}")
