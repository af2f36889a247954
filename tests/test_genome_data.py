"""The genome data pipeline: windows, the validation hold-out, the cache, bad input, crops, batches, masking."""

import gzip
import hashlib
import random

import pytest
import torch

from nucel.core.sequences import FastaError
from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID, MASK_ID, PAD_ID, SEP_ID
from nucel.tokenization import reverse_complement
from nucel.training.builtin_genome import generate_genome, write_builtin_genome
from nucel.training.collator import PretrainingCollator
from nucel.training.genome import (
    GenomeCrops,
    GenomeDataError,
    WindowBatchSampler,
    WindowCounts,
    WindowSettings,
    plan_windows,
    prepare_windows,
    validation_sample,
)

# Windows of 10 bp overlapping by 3 (stride 7); N runs of 4 or more split; pieces under 4 bp dropped.
SMALL = WindowSettings(
    window_length=10,
    window_overlap=3,
    split_at_n_run=4,
    max_n_fraction=0.5,
    min_window_length=4,
    validation_fraction=0.0,
)

HAND_MADE = {
    # 24 bp, partly soft-masked: windows at 0, 7, 14; the last ends exactly at the record's end.
    "plain": "ACGTACGTAC" + "gtacgtac" + "GTACGT",
    # A 5-N run (>= 4) splits the record: [0, 10) and [15, 29) -> [15, 25), [22, 29).
    "gap": "ACGTACGTAC" + "NNNNN" + "GGGGCCCCAAAATT",
    # A 2-N run does not split; the window keeps its Ns (20% N).
    "short_run": "ACGTANNCGTAC",
    # N runs of 3 (< 4) everywhere: no split, but both windows are mostly N and dropped.
    "mostly_n": "ANNNANNNANNNA",
    # Shorter than min_window_length: dropped.
    "tiny": "ACG",
}
EXPECTED = {
    "plain": [(0, 10), (7, 17), (14, 24)],
    "gap": [(0, 10), (15, 25), (22, 29)],
    "short_run": [(0, 10), (7, 12)],
    "mostly_n": [],
    "tiny": [],
}


def write_fasta(path, records: dict[str, str], line_width: int = 7, compress: bool = False):
    text = "".join(
        f">{name} a description\n" + "".join(seq[i : i + line_width] + "\n" for i in range(0, len(seq), line_width))
        for name, seq in records.items()
    )
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def rows(dataset):
    return [(row["record"], row["start"], row["end"], row["sequence"]) for row in dataset]


def test_window_coordinates_on_a_hand_made_fasta(tmp_path):
    fasta = write_fasta(tmp_path / "hand.fa", HAND_MADE)
    genome = prepare_windows([fasta], SMALL, tmp_path / "cache")

    expected = [
        (name, start, end, HAND_MADE[name][start:end].upper()) for name in HAND_MADE for start, end in EXPECTED[name]
    ]
    assert rows(genome.train) == expected
    assert len(genome.validation) == 0
    assert set(genome.train["source"]) == {"hand.fa"}
    assert genome.counts == WindowCounts(
        records=5,
        bases=sum(map(len, HAND_MADE.values())),
        n_bases=5 + 2 + 9,
        n_runs_split=1,
        train_windows=8,
        validation_windows=0,
        dropped_mostly_n=2,
        dropped_short=1,
    )


def test_lowercase_and_gzip_give_the_same_windows(tmp_path):
    upper = prepare_windows(
        [write_fasta(tmp_path / "upper.fa", {k: v.upper() for k, v in HAND_MADE.items()})], SMALL, tmp_path / "c1"
    )
    lower = prepare_windows(
        [write_fasta(tmp_path / "lower.fa.gz", {k: v.lower() for k, v in HAND_MADE.items()}, compress=True)],
        SMALL,
        tmp_path / "c2",
    )
    assert rows(upper.train) == rows(lower.train)
    assert all(sequence == sequence.upper() for sequence in lower.train["sequence"])


def test_many_files_are_windowed_in_order(tmp_path):
    first = write_fasta(tmp_path / "a.fa", {"plain": HAND_MADE["plain"]})
    second = write_fasta(tmp_path / "b.fa.gz", {"gap": HAND_MADE["gap"]}, compress=True)
    genome = prepare_windows([first, second], SMALL, tmp_path / "cache")
    assert genome.train["source"] == ["a.fa"] * 3 + ["b.fa.gz"] * 3
    assert genome.counts.records == 2


def test_validation_region_is_the_end_of_each_record(tmp_path):
    settings = WindowSettings(
        window_length=10, window_overlap=3, split_at_n_run=4, min_window_length=4, validation_fraction=0.25
    )
    record = "ACGT" * 25  # 100 bp: training [0, 75), validation [75, 100)
    counts = WindowCounts()
    windows = plan_windows(record, settings, counts)
    assert [w for w in windows if w[0] == "train"] == [("train", s, min(s + 10, 75)) for s in range(0, 75, 7)]
    assert [w for w in windows if w[0] == "validation"] == [
        ("validation", 75, 85),
        ("validation", 82, 92),
        ("validation", 89, 99),
        ("validation", 96, 100),
    ]


def assert_valid_windows(sequence: str, windows, settings: WindowSettings):
    """Invariants every windowing must satisfy, checked against the raw sequence."""
    train = [(s, e) for split, s, e in windows if split == "train"]
    validation = [(s, e) for split, s, e in windows if split == "validation"]
    for start, end in train:
        for v_start, v_end in validation:
            assert end <= v_start or v_end <= start, (
                f"training window {start, end} overlaps validation {v_start, v_end}"
            )
    long_run = "N" * settings.split_at_n_run
    for start, end in train + validation:
        assert 0 <= start < end <= len(sequence)
        assert settings.min_window_length <= end - start <= settings.window_length
        window = sequence[start:end]
        assert window.count("N") / len(window) <= settings.max_n_fraction
        assert long_run not in window  # long N runs cut records: no window holds one


def test_windowing_invariants_on_random_genomes():
    rng = random.Random(0)
    for trial in range(40):
        pieces = []
        for _ in range(rng.randint(1, 6)):
            pieces.append("".join(rng.choice("ACGT") for _ in range(rng.randint(0, 300))))
            pieces.append("N" * rng.randint(0, 30))
        sequence = "".join(pieces) or "ACGT"
        overlap = rng.randint(0, 20)
        settings = WindowSettings(
            window_length=rng.randint(overlap + 5, 80),
            window_overlap=overlap,
            split_at_n_run=rng.randint(1, 20),
            max_n_fraction=rng.random(),
            min_window_length=5,
            validation_fraction=rng.choice([0.0, 0.1, 0.3]),
        )
        windows = plan_windows(sequence, settings, WindowCounts())
        assert_valid_windows(sequence, windows, settings)


def test_validation_never_overlaps_training_on_real_dna(shared_data, tmp_path):
    fasta = shared_data / "pretrain" / "human_hg38_chr2_1-2333275" / "chr2_1-2333275.fa.gz"
    genome = prepare_windows([fasta], WindowSettings(validation_fraction=0.05), tmp_path / "cache")
    assert genome.counts.n_bases >= 10_000  # the first 10 kbp of chr2 are N
    assert min(genome.train["start"]) >= 10_000  # ... and no window starts in that gap
    assert max(genome.train["end"]) <= min(genome.validation["start"])
    assert len(genome.validation) > 50 and len(genome.train) > 1000


def test_the_cache_is_reused_and_keyed_by_files_and_settings(tmp_path, monkeypatch):
    fasta = write_fasta(tmp_path / "hand.fa", HAND_MADE)
    first = prepare_windows([fasta], SMALL, tmp_path / "cache")

    import nucel.training.genome as genome_module

    def must_not_rebuild(*args):
        raise AssertionError("the cache was rebuilt")

    with monkeypatch.context() as patched:
        patched.setattr(genome_module, "_write_windows", must_not_rebuild)
        again = prepare_windows([fasta], SMALL, tmp_path / "cache")
    assert again.folder == first.folder and rows(again.train) == rows(first.train)

    other_settings = prepare_windows(
        [fasta], WindowSettings(**{**SMALL.__dict__, "window_overlap": 2}), tmp_path / "cache"
    )
    assert other_settings.folder != first.folder
    write_fasta(fasta, {"plain": HAND_MADE["plain"] + "ACGTACGTACGT"})
    changed_file = prepare_windows([fasta], SMALL, tmp_path / "cache")
    assert changed_file.folder not in (first.folder, other_settings.folder)
    assert changed_file.counts.records == 1


def random_dna(length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(length))


def test_the_contig_filter_skips_alternate_and_unplaced_records_and_counts_them(tmp_path):
    records = {
        "chr1": random_dna(300, 0),
        "chr1_KI270762v1_alt": random_dna(200, 1),
        "chr1_KI270706v1_random": random_dna(100, 2),
        "chrUn_GL000195v1": random_dna(50, 3),
        "chrEBV": random_dna(80, 4),
        "chr2": random_dna(120, 5),
    }
    fasta = write_fasta(tmp_path / "hg.fa", records)
    genome = prepare_windows([fasta], SMALL, tmp_path / "cache")
    assert set(genome.train["record"]) == {"chr1", "chr2"}
    assert (genome.counts.records, genome.counts.bases) == (2, 420)
    assert (genome.counts.skipped_records, genome.counts.skipped_bases) == (4, 430)
    assert "4 records (430 bp) skipped by skip_contigs" in genome.counts.describe()

    # The filter is a list of regular expressions, part of the cache key: another filter builds other windows.
    only_alt = WindowSettings(**{**SMALL.__dict__, "skip_contigs": [r"_alt$"]})
    kept = prepare_windows([fasta], only_alt, tmp_path / "cache")
    assert kept.folder != genome.folder
    assert set(kept.train["record"]) == set(records) - {"chr1_KI270762v1_alt"} and kept.counts.skipped_records == 1
    everything = prepare_windows([fasta], WindowSettings(**{**SMALL.__dict__, "skip_contigs": ()}), tmp_path / "cache")
    assert set(everything.train["record"]) == set(records) and everything.counts.skipped_records == 0
    with pytest.raises(ValueError, match="skip_contigs: '\\(' is not a regular expression"):
        WindowSettings(skip_contigs=["("])


def test_validation_windows_come_from_every_record(tmp_path):
    # Five records of different lengths; the last 40% of each is held out for validation.
    records = {f"chr{i}": random_dna(200 + 100 * i, i) for i in range(1, 6)}
    settings = WindowSettings(window_length=20, window_overlap=5, min_window_length=10, validation_fraction=0.4)
    genome = prepare_windows([write_fasta(tmp_path / "five.fa", records)], settings, tmp_path / "cache")
    assert len(genome.validation) > 5 * 10

    sample = validation_sample(len(genome.validation), 10, seed=3)
    assert len(sample) == len(set(sample)) == 10
    assert {genome.validation[index]["record"] for index in sample} == set(records)  # not the first record only
    assert sample == validation_sample(len(genome.validation), 10, seed=3)  # fixed for a seed ...
    assert sample != validation_sample(len(genome.validation), 10, seed=4)  # ... and seeded
    assert validation_sample(7, 10, seed=0) == list(range(7))  # fewer windows than asked: all of them


def write_text(path, text: str):
    path.write_text(text)
    return path


def truncated_gzip(path):
    write_fasta(path, {"chr": "ACGT" * 5000}, compress=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make_input, error, message",
    [
        (lambda d: d / "missing.fa", FastaError, "no such file"),
        (lambda d: write_text(d / "notes.fa", "hello, this is not a FASTA file\n"), FastaError, "FASTA"),
        (lambda d: write_text(d / "empty.fa", ""), FastaError, "empty"),
        (
            lambda d: write_fasta(d / "gaps.fa", {"chrUn": "N" * 5000, "chrM": "n" * 300}),
            GenomeDataError,
            "no training windows",
        ),
        (lambda d: truncated_gzip(d / "cut.fa.gz"), FastaError, "truncated"),
    ],
    ids=["missing", "not-fasta", "empty", "all-N", "truncated-gz"],
)
def test_bad_input_is_a_clear_error_and_leaves_no_cache(tmp_path, make_input, error, message):
    path = make_input(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(error, match=message) as raised:
        prepare_windows([path], WindowSettings(validation_fraction=0.1), cache)
    assert path.name in str(raised.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_crops_are_a_function_of_seed_epoch_and_index(tmp_path):
    fasta = write_fasta(tmp_path / "g.fa", {"chr": "".join(random.Random(1).choice("ACGT") for _ in range(2000))})
    genome = prepare_windows(
        [fasta],
        WindowSettings(window_length=100, window_overlap=10, validation_fraction=0.0, min_window_length=50),
        tmp_path / "c",
    )
    crops = GenomeCrops(genome.train, crop_length=60, seed=7, random_strand=True)
    same_again = GenomeCrops(genome.train, crop_length=60, seed=7, random_strand=True)
    assert crops[(3, 5)] == same_again[(3, 5)]
    assert crops[(3, 5)] != crops[(4, 5)] or crops[(3, 6)] != crops[(4, 6)]

    strands = []
    for epoch in range(60):
        crop = crops[(epoch, 2)]
        window = genome.train[2]["sequence"]
        assert len(crop["sequence"]) == 60 and crop["window_index"] == 2
        forward = crop["sequence"] in window
        assert forward or reverse_complement(crop["sequence"]) in window
        strands.append(forward)
    assert 15 < sum(strands) < 45  # both strands drawn, about half each

    no_flip = GenomeCrops(genome.train, crop_length=60, seed=7, random_strand=False)
    assert all(no_flip[(epoch, 2)]["sequence"] in genome.train[2]["sequence"] for epoch in range(20))
    # A window shorter than the crop is used whole (the last window of the record is 90 bp here).
    assert (
        GenomeCrops(genome.train, crop_length=100, seed=0, random_strand=False)[(0, len(genome.train) - 1)]["sequence"]
        == genome.train[-1]["sequence"]
    )


def test_batches_are_disjoint_across_processes_and_resume_exactly():
    def take(sampler, n):
        iterator = iter(sampler)
        return [next(iterator) for _ in range(n)]

    num_windows, batch = 50, 4  # 2 processes: 6 global batches per epoch, 2 windows left over each epoch
    rank0 = take(WindowBatchSampler(num_windows, batch, seed=3, num_processes=2, process_index=0), 13)
    rank1 = take(WindowBatchSampler(num_windows, batch, seed=3, num_processes=2, process_index=1), 13)
    for step in range(13):
        assert not {i for _, i in rank0[step]} & {i for _, i in rank1[step]}
    first_epoch = [i for b in rank0[:6] + rank1[:6] for _, i in b]
    assert len(first_epoch) == len(set(first_epoch)) == 48
    assert {e for b in rank0[6:12] for e, _ in b} == {1} and rank0[12][0][0] == 2
    assert (
        take(WindowBatchSampler(num_windows, batch, seed=3, num_processes=2, process_index=0, start_batch=5), 8)
        == rank0[5:13]
    )
    with pytest.raises(GenomeDataError, match="cannot fill one batch"):
        WindowBatchSampler(7, 4, seed=0, num_processes=2)


def test_collator_masks_each_example_by_its_own_seed(tokenizer):
    collator = PretrainingCollator(tokenizer, mask_probability=0.3)
    a = {"sequence": "ACGTTGCA" * 20, "window_index": 0, "mask_seed": 11}
    b = {"sequence": "acgtn" * 10, "window_index": 1, "mask_seed": 12}
    batch = collator([a, b])
    alone = collator([a])
    assert torch.equal(batch["input_ids"][0], alone["input_ids"][0]) and torch.equal(
        batch["labels"][0], alone["labels"][0]
    )

    ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == (2, 161) and attention[1].sum() == 51 and (ids[1, 51:] == PAD_ID).all()
    assert ids[0, 0] == CLS_ID and not (ids == SEP_ID).any()  # the released template: [CLS] bases
    selected = labels != -100
    assert selected.any()
    assert torch.isin(
        labels[selected], torch.tensor(BASE_IDS)
    ).all()  # only bases are ever selected (never N, specials, pad)
    # A selected position holds [MASK] or its own base; unselected positions are untouched.
    assert ((ids[selected] == MASK_ID) | (ids[selected] == labels[selected])).all()
    original = tokenizer([a["sequence"], b["sequence"]], padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(ids[~selected], original[~selected])


def test_masking_does_not_depend_on_the_padding_of_the_batch(tokenizer):
    collator = PretrainingCollator(tokenizer, mask_probability=0.3)
    a = {"sequence": "ACGTTGCA" * 10, "window_index": 0, "mask_seed": 11}  # 81 tokens
    longer = {"sequence": "GATTACA" * 30, "window_index": 1, "mask_seed": 12}  # 211 tokens: `a` is padded beside it
    alone, padded = collator([a]), collator([a, longer])
    length = alone["input_ids"].shape[1]
    assert padded["input_ids"].shape[1] > length
    for name in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(padded[name][0, :length], alone[name][0]), name
    assert (padded["input_ids"][0, length:] == PAD_ID).all() and (padded["labels"][0, length:] == -100).all()
    assert not padded["attention_mask"][0, length:].any()


def test_builtin_genome_is_deterministic_synthetic_and_structured(tmp_path):
    first = write_builtin_genome(tmp_path / "one", 200_000)
    second = write_builtin_genome(tmp_path / "two", 200_000)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    with gzip.open(first, "rt") as handle:
        header = handle.readline()
    assert "synthetic" in header and "not real" in header
    records = generate_genome(200_000)
    assert [name for name, _ in records] == ["synthetic1", "synthetic2"]
    sequence = "".join(seq for _, seq in records)
    assert len(sequence) == 200_000
    assert sequence.startswith("N" * 5000)  # a leading assembly gap, as at GRCh38's chromosome ends
    assert any(c.islower() for c in sequence)  # soft-masked repeat copies
    upper = sequence.upper()
    # CpG depletion: the CG dinucleotide is rarer than its bases' frequencies predict, as in vertebrate DNA.
    bases = len(upper) - upper.count("N")
    expected_cg = upper.count("C") * upper.count("G") / bases
    assert upper.count("CG") < 0.6 * expected_cg
    genome = prepare_windows([first], WindowSettings(), tmp_path / "cache")
    assert genome.counts.n_runs_split >= 4 and len(genome.train) > 100


def test_validation_blocks_are_spread_over_the_record_and_never_overlap_training():
    from nucel.training.genome import split_regions

    settings = WindowSettings(
        window_length=200,
        window_overlap=20,
        min_window_length=50,
        validation_fraction=0.1,
        validation_block_length=1_000,
    )
    regions = split_regions(50_000, settings)
    held_out = [(start, end) for split, start, end in regions if split == "validation"]
    assert len(held_out) == 5 and all(end - start == 1_000 for start, end in held_out)  # one block in every ten
    assert held_out[0][0] == 5_000 and held_out[-1][1] == 46_000  # from near the start to near the end, not a tail
    assert [start for _, start, _ in regions] == sorted(start for _, start, _ in regions)
    assert regions[0][1] == 0 and regions[-1][2] == 50_000
    assert all(a[2] == b[1] for a, b in zip(regions, regions[1:]))  # a partition: no base in two regions
    tail = split_regions(50_000, WindowSettings(validation_fraction=0.1))
    assert tail == [("train", 0, 45_000), ("validation", 45_000, 50_000)]  # without blocks: the tail, as before


def test_validation_blocks_keep_training_windows_off_held_out_bases():
    import random

    from nucel.training.genome import WindowCounts, plan_windows

    rng = random.Random(0)
    sequence = "".join(rng.choice("ACGT") for _ in range(20_000))
    settings = WindowSettings(
        window_length=300,
        window_overlap=50,
        min_window_length=100,
        validation_fraction=0.2,
        validation_block_length=2_000,
    )
    windows = plan_windows(sequence, settings, WindowCounts())
    held_out = {base for split, start, end in windows if split == "validation" for base in range(start, end)}
    trained = {base for split, start, end in windows if split == "train" for base in range(start, end)}
    assert held_out and not held_out & trained
    assert 0.15 < len(held_out) / len(sequence) < 0.25
