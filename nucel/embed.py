"""`nucel embed`: embeddings of a FASTA/CSV/TSV file written as .npy (+ .ids.tsv) or .parquet, streamed.

    nucel embed --model MODEL sequences.fa -o embeddings.npy --pooling mean
    nucel embed --model MODEL genome.fa.gz -o per_base.parquet --per-base --reverse-complement --dtype float16

What is computed (pooling, per-base rows, windows, reverse-complement averaging): nucel/core/embeddings.py. The
output appears under its name only when complete (written beside it and renamed).
"""

import argparse
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from nucel.core.embeddings import EmbeddingPiece, embedding_stream
from nucel.core.errors import interruption_reported
from nucel.core.files import atomic_file
from nucel.core.models import load_encoder, resolve_model_folder
from nucel.core.references import command_regions
from nucel.core.sequences import (
    InputSummary,
    SequenceRecord,
    clean_sequence,
    iter_sequences,
    scan_sequences,
    with_unique_ids,
)
from nucel.core.windows import check_windows

OUTPUT_DTYPES = {"float32": np.float32, "float16": np.float16}
# A Parquet row group of about this size: large enough to read efficiently, small enough to hold while writing.
ROW_GROUP_BYTES = 16 << 20


def ids_path(npy_path: str | Path) -> Path:
    """The id table written beside an embeddings .npy: embeddings.npy -> embeddings.ids.tsv."""
    npy_path = Path(npy_path)
    return npy_path.with_name(npy_path.name.removesuffix(".npy") + ".ids.tsv")


def check_output_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in (".npy", ".parquet"):
        raise ValueError(f"{path}: the output must end in .npy or .parquet (-o/--output)")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; -o/--output names the file to write")
    return path


class NpyRowWriter:
    """Rows appended to an open .npy file. The header is written first with 0 rows and rewritten with the final
    count by `finish`: numpy pads every header so that its first dimension can grow in place."""

    def __init__(self, handle, width: int, dtype):
        self.handle, self.width, self.dtype, self.rows = handle, width, np.dtype(dtype), 0
        self.header_size = self._write_header()

    def _write_header(self) -> int:
        self.handle.seek(0)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, self.width),
        }
        np.lib.format.write_array_header_1_0(self.handle, header)
        return self.handle.tell()

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, self.width)
        self.handle.write(rows.tobytes())
        self.rows += len(rows)

    def finish(self) -> None:
        self.handle.flush()
        end = self.handle.tell()
        if self._write_header() != self.header_size:
            raise RuntimeError(f"{self.rows} rows do not fit the .npy header written for 0 rows")
        self.handle.seek(end)


def write_embedding_stream(
    path: str | Path, pieces: Iterable[EmbeddingPiece], width: int, per_base: bool, dtype=np.float32
) -> tuple[list[Path], int]:
    """Write embeddings as they come (pieces in input order); returns (files written, records written).

    - `.npy`: pooled -> (sequences, hidden) with `<name>.ids.tsv` (column `id`, one line per row);
      per-base -> all sequences' rows concatenated, (total bases, hidden), with `<name>.ids.tsv` giving each
      sequence's rows `start`..`end` (end exclusive).
    - `.parquet`: pooled -> columns `id`, `embedding`; per-base -> one row per base with `id`, `offset`
      (0-based position in the sequence), `base` and `embedding`; written in row groups of about 16 MiB.
    Values are stored as `dtype` (float32 or float16). Nothing appears under the final names unless every piece
    was written: an error or Ctrl-C leaves no partial file.
    """
    path = check_output_path(path)
    records = 0
    if path.suffix == ".npy":
        with ExitStack() as stack:
            array_file = stack.enter_context(atomic_file(path))
            table_file = stack.enter_context(atomic_file(ids_path(path)))
            with open(array_file, "wb") as array_handle, open(table_file, "w") as table:
                rows = NpyRowWriter(array_handle, width, dtype)
                table.write("id\tstart\tend\n" if per_base else "id\n")
                start = 0
                for piece in pieces:
                    rows.write(piece.vectors)
                    if piece.last:
                        table.write(
                            f"{piece.record.id}\t{start}\t{rows.rows}\n" if per_base else f"{piece.record.id}\n"
                        )
                        start, records = rows.rows, records + 1
                rows.finish()
        return [path, ids_path(path)], records

    import pyarrow as pa
    import pyarrow.parquet as pq

    value_type = pa.float16() if np.dtype(dtype) == np.float16 else pa.float32()
    columns = [("id", pa.string())] + ([("offset", pa.int64()), ("base", pa.string())] if per_base else [])
    schema = pa.schema([*columns, ("embedding", pa.list_(value_type, width))])
    group_rows = max(1, ROW_GROUP_BYTES // (width * np.dtype(dtype).itemsize))
    buffered = []  # (id, first offset, bases, vectors already in the stored dtype) until a row group is full
    buffered_rows = 0

    def row_group(parts: list) -> pa.Table:
        data = {
            "id": pa.array([record_id for record_id, _, _, vectors in parts for _ in range(len(vectors))], pa.string())
        }
        if per_base:
            data["offset"] = pa.array(
                np.concatenate([np.arange(start, start + len(vectors)) for _, start, _, vectors in parts])
            )
            data["base"] = pa.array([base for _, _, bases, _ in parts for base in bases], pa.string())
        values = np.concatenate([vectors for _, _, _, vectors in parts]).ravel()
        data["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(values, value_type), width)
        return pa.table(data, schema=schema)

    # Dictionary encoding suits the repeated ids and the four bases, not the floats.
    with atomic_file(path) as staging, pq.ParquetWriter(staging, schema, use_dictionary=["id", "base"]) as writer:
        for piece in pieces:
            vectors = np.asarray(piece.vectors, dtype=dtype).reshape(-1, width)
            bases = piece.sequence[piece.start : piece.start + len(vectors)] if per_base else ""
            buffered.append((piece.record.id, piece.start, bases, vectors))
            buffered_rows += len(vectors)
            records += piece.last
            if buffered_rows >= group_rows:
                writer.write_table(row_group(buffered))
                buffered, buffered_rows = [], 0
        if buffered:
            writer.write_table(row_group(buffered))
    return [path], records


def write_embeddings(
    path: str | Path, ids: list[str], embeddings, sequences: list[str] | None = None, dtype=np.float32
) -> list[Path]:
    """Write in-memory embeddings (`embed_sequences`' result: an array pooled, a list of arrays per-base) in the
    layout of `write_embedding_stream`; per-base Parquet needs the `sequences` (for the `base` column)."""
    per_base = isinstance(embeddings, list)
    if per_base and Path(path).suffix == ".parquet" and sequences is None:
        raise ValueError("per-base parquet output needs the sequences (for the `base` column)")
    clean = [clean_sequence(s) for s in sequences] if sequences is not None else [""] * len(ids)
    pieces = (
        EmbeddingPiece(SequenceRecord(i, s, ""), s, 0, np.asarray(e), True) for i, s, e in zip(ids, clean, embeddings)
    )
    width = embeddings[0].shape[-1] if per_base else np.asarray(embeddings).shape[1]
    return write_embedding_stream(path, pieces, width, per_base, dtype)[0]


def run(args: argparse.Namespace) -> None:
    output = check_output_path(args.output)
    check_windows(args.window, args.overlap)
    check_map_options(args)
    if args.map:  # scikit-learn and matplotlib: only for a map
        from nucel.embedding_map import check_map_output, check_map_size, read_labels, write_embedding_map

        check_map_output(args.map)
    resolve_model_folder(args.model)  # a wrong model name fails before the input is read
    if args.regions:
        regions = region_records(args)
        lengths = [len(region.sequence) for region in regions]
        summary = InputSummary(len(regions), sum(lengths), max(lengths), "")
    elif args.input is None:
        raise ValueError("give an input file of sequences, or --regions BED with --reference")
    else:
        summary = scan_sequences(args.input, args.sequence_column, args.id_column)
    if args.map:
        check_map_size(summary.records)  # before hours of inference, not after
    labels = (
        read_labels(args.input, args.label_column, args.sequence_column, args.id_column) if args.label_column else None
    )
    model, tokenizer = load_encoder(args.model, args.device)
    inputs = iter(regions) if args.regions else iter_sequences(args.input, args.sequence_column, args.id_column)
    records = with_unique_ids(inputs)
    pieces = embedding_stream(
        model,
        tokenizer,
        records,
        pooling=None if args.per_base else args.pooling,
        layer=args.layer,
        reverse_complement_average=args.reverse_complement,
        window=args.window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        total_bases=summary.bases,
    )
    if args.map:
        pooled = []  # the per-sequence vectors, for the map: sequences x hidden, small beside the input
        pieces = kept(pieces, pooled)
    with interruption_reported(output):
        written, count = write_embedding_stream(
            output, pieces, model.config.hidden_size, args.per_base, OUTPUT_DTYPES[args.dtype]
        )
        if args.map:
            written.append(
                write_embedding_map(
                    np.stack(pooled),
                    labels,
                    Path(args.map),
                    args.map_method,
                    title=f"{Path(args.input or args.regions).name}, {args.pooling} pooling",
                    label_name=args.label_column or "label",
                )
            )
    print(f"{count} sequences embedded ({summary.bases:,} bp) -> {', '.join(map(str, written))}")


def region_records(args: argparse.Namespace) -> list[SequenceRecord]:
    """The regions of --regions BED in --reference as records named by the BED (core/bed.py), read and checked now."""
    if args.input is not None:
        raise ValueError("give an input file or --regions, not both")
    if args.label_column:
        raise ValueError("--label-column reads an input table; BED regions have no labels")
    _, regions = command_regions(None, args.regions, args.reference)
    return [
        SequenceRecord(region.name, region.sequence, f"{args.regions} region {region.name!r}") for region in regions
    ]


def check_map_options(args: argparse.Namespace) -> None:
    if args.map and args.per_base:
        raise ValueError("--map draws one point per sequence: leave out --per-base (or draw the map in a second run)")
    if args.label_column and not args.map:
        raise ValueError("--label-column colours the points of --map: give --map PNG too")


def kept(pieces: Iterable[EmbeddingPiece], vectors: list) -> Iterator[EmbeddingPiece]:
    """Pass pooled pieces on unchanged, keeping each one's vector."""
    for piece in pieces:
        vectors.append(piece.vectors)
        yield piece
