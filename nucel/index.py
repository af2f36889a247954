"""`nucel index`: an indexable copy of a reference FASTA, for the commands that read it by position.

    nucel index genome.fa.gz                  -> genome.bgz.fa.gz + .fai + .gzi beside it
    nucel index genome.fa.gz -o ref/genome.bgz.fa.gz

The input may be plain FASTA, gzip or bgzip; it is read record by record (core/sequences.read_fasta: every
character checked) and written bgzip-compressed in lines of 60 bases, so that htslib can index it even where the
input's lines had unequal lengths. The copy and its indexes appear under their names only when complete.
"""

import argparse
import os
from pathlib import Path

from nucel.core.files import atomic_file
from nucel.core.references import Reference, ReferenceFileError, build_indexes, indexed_copy_name
from nucel.core.sequences import read_fasta

LINE_LENGTH = 60  # bases per line, as NCBI and Ensembl write FASTA


def write_indexed_copy(source: str | Path, target: str | Path) -> tuple[int, int]:
    """Write `source` as bgzipped FASTA at `target` with its .fai and .gzi; returns (records, bases)."""
    from pysam.libcbgzf import BGZFile

    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise ReferenceFileError(f"{target}: the copy would overwrite its input; give another -o/--output")
    records = bases = 0
    with atomic_file(target) as staging:
        with BGZFile(str(staging), "wb") as handle:
            for name, sequence in read_fasta(source):
                lines = (sequence[i : i + LINE_LENGTH] for i in range(0, len(sequence), LINE_LENGTH))
                handle.write((f">{name}\n" + "\n".join(lines) + "\n").encode("ascii"))
                records, bases = records + 1, bases + len(sequence)
        try:
            build_indexes(staging)
            for suffix in (".fai", ".gzi"):  # the indexes take the copy's name; renamed before the copy itself
                os.replace(f"{staging}{suffix}", f"{target}{suffix}")
        finally:
            for suffix in (".fai", ".gzi"):
                Path(f"{staging}{suffix}").unlink(missing_ok=True)
    return records, bases


def run(args: argparse.Namespace) -> None:
    source = Path(args.reference)
    target = Path(args.output) if args.output else indexed_copy_name(source)
    if not source.is_file():
        raise ReferenceFileError(f"{source}: no such file")
    if not os.access(target.parent if target.parent.exists() else Path.cwd(), os.W_OK):
        raise ReferenceFileError(f"{target.parent} is not writable; give -o WRITABLE_FOLDER/{target.name}")
    if target.exists() and not args.overwrite:
        raise FileExistsError(
            f"-o/--output {target}: the file exists; pass --overwrite to replace it, or choose another name"
        )
    records, bases = write_indexed_copy(source, target)
    Reference(target).close()  # what score-variants, ism and attention will open: checked now
    print(f"{records:,} records ({bases:,} bp) -> {target} (+ .fai, .gzi); pass it as --reference")
