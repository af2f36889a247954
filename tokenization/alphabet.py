"""DNA as text: the IUPAC alphabet every reader checks with, validation with errors that point at the character,
and the reverse complement. Plain Python (no torch): table and FASTA readers use it before any model is loaded."""

import re

# IUPAC nucleotide codes (upper and lower case), and their complements.
IUPAC_COMPLEMENT = str.maketrans("ACGTRYSWKMBDHVNacgtryswkmbdhvn", "TGCAYRSWMKVHDBNtgcayrswmkvhdbn")
IUPAC_CODES = frozenset("ACGTRYSWKMBDHVN")
# The alphabet as regular expressions (either case), the one spelling every reader checks with.
_LETTERS = "".join(sorted(IUPAC_CODES))
ONLY_IUPAC = re.compile(f"[{_LETTERS}{_LETTERS.lower()}]+")  # fullmatch: plain DNA, the fast path
NOT_IUPAC = re.compile(f"[^{_LETTERS}{_LETTERS.lower()}]")  # search: the first character that is not DNA
_WHITESPACE = re.compile(r"\s+")


class InvalidDNAError(ValueError):
    """Raised for a sequence that is not DNA; the message names the character, its position and the source."""


def validate_dna(sequence: str, source: str | None = None) -> str:
    """Return `sequence` (whitespace removed, upper-cased) if it is DNA in IUPAC codes, else raise InvalidDNAError.

    Whitespace and newlines inside a pasted sequence are ignored. Positions are 1-based in the input as given.
    `source` (e.g. "train.csv line 12") is put in the message so the user can find the bad record.
    """
    where = f" in {source}" if source else ""
    if not sequence or not _WHITESPACE.sub("", sequence):
        raise InvalidDNAError(f"empty sequence{where}")
    for position, character in enumerate(sequence, start=1):
        if character.isspace() or character.upper() in IUPAC_CODES:
            continue
        if character == ">":
            hint = " (a FASTA header line pasted into the sequence?)"
        elif character.isdigit():
            hint = " (digits are not nucleotides: a coordinate or line number?)"
        elif character.upper() == "U":
            hint = " (U is RNA: convert to T first)"
        elif character.isalpha():
            hint = " (not an IUPAC nucleotide code: a protein sequence?)"
        else:
            hint = ""
        raise InvalidDNAError(f"invalid character {character!r} at position {position}{where}{hint}")
    return _WHITESPACE.sub("", sequence).upper()


def reverse_complement(sequence: str) -> str:
    """Reverse complement of a DNA string (IUPAC aware, case preserved)."""
    return sequence.translate(IUPAC_COMPLEMENT)[::-1]
