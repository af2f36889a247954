"""Reading FASTA and FASTA.gz (plain gzip or bgzip), record by record, with errors that name the file and line."""

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from nucel.tokenization.dna import IUPAC_CODES

_NOT_NUCLEOTIDE = re.compile(f"[^{''.join(sorted(IUPAC_CODES))}{''.join(sorted(IUPAC_CODES)).lower()}]")


class FastaError(ValueError):
    """A file that cannot be read as FASTA; the message names the file, and the line where it applies."""


def _open_text(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="ascii", errors="strict")
    return open(path, encoding="ascii", errors="strict")


def read_fasta(path: str | Path, validate: bool = True) -> Iterator[tuple[str, str]]:
    """Yield (record name, sequence) pairs. The sequence keeps its case (soft-masking) and its N runs.

    Raises FastaError for a missing file, a file that is not FASTA (text before the first '>', or a character
    that is not an IUPAC nucleotide code), a record without sequence, an empty file, or a truncated/corrupt gzip.
    """
    path = Path(path)
    if path.is_dir():
        raise FastaError(f"{path} is a directory; give the FASTA file inside it")
    if not path.is_file():
        raise FastaError(f"{path}: no such file")
    name, chunks, header_line, records = None, [], 0, 0
    line_number = 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    if name is not None:
                        yield _finish(path, name, chunks, header_line)
                        records += 1
                    name, chunks, header_line = line[1:].split()[0] if line[1:].split() else "", [], line_number
                    if not name:
                        raise FastaError(f"{path} line {line_number}: header '>' without a record name")
                    continue
                if name is None:
                    raise FastaError(f"{path} line {line_number}: expected a '>' header before sequence data; is this a FASTA file?")
                if validate and (bad := _NOT_NUCLEOTIDE.search(line)):
                    raise FastaError(
                        f"{path} line {line_number} column {bad.start() + 1}: invalid character {bad.group()!r} "
                        f"in record {name!r}"
                    )
                chunks.append(line)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise FastaError(f"{path}: truncated or corrupt gzip after line {line_number} ({error})") from error
    except UnicodeDecodeError as error:
        raise FastaError(f"{path} line {line_number + 1}: not text (binary data); is this a FASTA file?") from error
    if name is None:
        raise FastaError(f"{path}: empty FASTA (no '>' record)")
    yield _finish(path, name, chunks, header_line)


def _finish(path: Path, name: str, chunks: list[str], header_line: int) -> tuple[str, str]:
    if not chunks:
        raise FastaError(f"{path} line {header_line}: record {name!r} has no sequence")
    return name, "".join(chunks)
