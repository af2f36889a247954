"""A small SYNTHETIC genome for the no-download demo. It is generated, not real DNA.

Nothing here is biology; it only has to give a tiny model something to learn, in the ways real genomes do:

* a background drawn from a second-order Markov chain with a genome-like composition (about 40% GC, CpG
  depleted), so the next base depends on the previous two;
* a few interspersed repeat families (300-bp consensus sequences) planted in many diverged copies on either strand
  and soft-masked in lowercase, as RepeatMasker output is;
* short motifs (8-12 bp) planted at random, and microsatellites ((CA)n, (GGAA)n ...);
* assembly gaps: runs of N inside records and at the start of the first one (as in GRCh38's chromosome ends).

The same (length, seed) always gives the same bytes, so the window cache built from it is reused across runs.
"""

import gzip
from pathlib import Path

import numpy as np

from nucel.core.files import atomic_file
from nucel.tokenization import reverse_complement

BASES = "ACGT"
NUMBER_OF_RECORDS = 2
REPEAT_FAMILIES = 4
REPEAT_LENGTH = 300
REPEAT_DIVERGENCE = 0.1  # per-base chance that a planted copy differs from its consensus
REPEAT_COPIES_PER_MBP = 500  # about 15% of the genome, like the interspersed repeats of a mammal (45%), scaled down
MOTIFS = 16
MOTIF_COPIES_PER_MBP = 1500
MICROSATELLITE_UNITS = ("CA", "GGAA", "T", "AAT")
MICROSATELLITES_PER_MBP = 100
GAPS_PER_RECORD = 2
GAP_LENGTH = 5000


def markov_background(length: int, rng: np.random.Generator) -> str:
    """DNA from a second-order Markov chain whose transition rows are drawn around a GC-poor, CpG-depleted mean."""
    base_composition = np.array([0.3, 0.2, 0.2, 0.3])
    transitions = rng.dirichlet(base_composition * 20, size=16)
    for previous in range(16):
        if previous % 4 == 1:  # previous base C: G after C (a CpG) is rare, as methylated CpGs mutate away
            transitions[previous, 2] *= 0.2
    transitions /= transitions.sum(axis=1, keepdims=True)
    thresholds = np.cumsum(transitions, axis=1)[:, :3].tolist()

    letters = bytearray(length)
    codes = b"ACGT"
    state = 0
    for position, draw in enumerate(rng.random(length).tolist()):
        low, middle, high = thresholds[state]
        base = 0 if draw < low else 1 if draw < middle else 2 if draw < high else 3
        letters[position] = codes[base]
        state = (state * 4 + base) % 16
    return letters.decode("ascii")


def random_dna(length: int, rng: np.random.Generator) -> str:
    return "".join(BASES[i] for i in rng.integers(0, 4, length))


def mutate(sequence: str, rate: float, rng: np.random.Generator) -> str:
    """Point substitutions at the given per-base rate."""
    letters = list(sequence)
    for position in np.flatnonzero(rng.random(len(letters)) < rate):
        letters[position] = BASES[(BASES.index(letters[position]) + int(rng.integers(1, 4))) % 4]
    return "".join(letters)


def generate_record(length: int, rng: np.random.Generator, repeats: list[str], motifs: list[str], leading_gap: bool) -> str:
    """One record: Markov background with planted repeats, motifs, microsatellites and N gaps (each a substitution
    of the background at a random position, so the record keeps its length)."""
    letters = list(markov_background(length, rng))
    megabases = length / 1e6

    def plant(text: str) -> None:
        start = int(rng.integers(0, length - len(text)))
        letters[start : start + len(text)] = text

    for _ in range(int(MOTIF_COPIES_PER_MBP * megabases)):
        motif = motifs[int(rng.integers(len(motifs)))]
        plant(motif if rng.random() < 0.5 else reverse_complement(motif))
    for _ in range(int(MICROSATELLITES_PER_MBP * megabases)):
        unit = MICROSATELLITE_UNITS[int(rng.integers(len(MICROSATELLITE_UNITS)))]
        plant(unit * int(rng.integers(6, 20)))
    for _ in range(int(REPEAT_COPIES_PER_MBP * megabases)):
        copy = mutate(repeats[int(rng.integers(len(repeats)))], REPEAT_DIVERGENCE, rng)
        plant((copy if rng.random() < 0.5 else reverse_complement(copy)).lower())
    for _ in range(GAPS_PER_RECORD):
        plant("N" * GAP_LENGTH)
    if leading_gap:
        letters[:GAP_LENGTH] = ["N"] * GAP_LENGTH
    return "".join(letters)


def generate_genome(length: int, seed: int = 0) -> list[tuple[str, str]]:
    """(record name, sequence) pairs totalling `length` bp."""
    if length < NUMBER_OF_RECORDS * 4 * GAP_LENGTH:
        raise ValueError(f"the built-in genome needs at least {NUMBER_OF_RECORDS * 4 * GAP_LENGTH} bp, got {length}")
    rng = np.random.default_rng(seed)
    repeats = [random_dna(REPEAT_LENGTH, rng) for _ in range(REPEAT_FAMILIES)]
    motifs = [random_dna(int(rng.integers(8, 13)), rng) for _ in range(MOTIFS)]
    record_length = length // NUMBER_OF_RECORDS
    return [
        (f"synthetic{number + 1}", generate_record(record_length, rng, repeats, motifs, leading_gap=number == 0))
        for number in range(NUMBER_OF_RECORDS)
    ]


def write_builtin_genome(folder: str | Path, length: int, seed: int = 0) -> Path:
    """Write the built-in genome as FASTA.gz into `folder` (once; an existing file is reused) and return its path."""
    path = Path(folder) / f"builtin_synthetic_genome_{length}bp_seed{seed}.fa.gz"
    if path.is_file():
        return path
    # mtime=0 keeps the gzip header, hence the bytes, identical between runs (and between processes writing it).
    with atomic_file(path, concurrent=True) as staging:
        with open(staging, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            for name, sequence in generate_genome(length, seed):
                handle.write(f">{name} synthetic DNA generated by nucel.training.builtin_genome (not real)\n".encode())
                for start in range(0, len(sequence), 80):
                    handle.write(sequence[start : start + 80].encode() + b"\n")
    return path
