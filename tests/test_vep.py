"""Zero-shot BRCA1 variant-effect suite: metrics equal scikit-learn's, the llr by hand from the logits, REF checked
against the FASTA (a mismatch is a clear error), per-consequence counts that add up, and the written report."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from nucel import NucELConfig, NucELGenerator, NucELModel
from nucel.benchmarks.vep import (
    FASTA_NAME,
    TABLE_NAME,
    VepError,
    binary_metrics,
    by_consequence,
    check_window,
    llr_parts_auroc,
    load_sge_table,
    model_score,
    site_parts,
)
from nucel.cli import benchmark_alias
from nucel.cli import main as nucel_main
from nucel.core.models import save_model_folder
from nucel.modeling_nucel.configuration_nucel import BASE_IDS
from nucel.tokenization import load_tokenizer, reverse_complement

FIRST_POSITION = 41180001  # chr17 position of the FASTA's first base (its record name and the data README)
WINDOW = 32
SUBSET = 120  # evenly spaced rows: every region of the table, LOF and functional variants alike


@pytest.fixture(scope="module")
def vep_data(shared_data):
    folder = shared_data / "vep"
    if not (folder / TABLE_NAME).is_file():
        pytest.skip(f"{folder / TABLE_NAME} is absent (the BRCA1 SGE data of ../shared/data/vep)")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("vep-models")
    generator = save_model_folder(
        NucELGenerator(NucELConfig.from_preset("tiny-generator", restrict_to_bases=True)), root / "generator"
    )
    encoder = save_model_folder(NucELModel(NucELConfig.from_preset("tiny")), root / "encoder")
    return str(generator), str(encoder)


@pytest.fixture(scope="module")
def full(vep_data):
    return load_sge_table(vep_data / TABLE_NAME, vep_data / FASTA_NAME)


@pytest.fixture(scope="module")
def subset(vep_data):
    return load_sge_table(vep_data / TABLE_NAME, vep_data / FASTA_NAME, max_variants=SUBSET)


@pytest.fixture(scope="module")
def fasta(vep_data) -> str:
    """The FASTA read independently of the package, as the data README does."""
    return "".join(line.strip() for line in open(vep_data / FASTA_NAME) if not line.startswith(">"))


def small_table(vep_data, folder, edit=None, rows=5):
    """A copy of the table's header and first rows in `folder` beside the real FASTA; `edit(rows)` may change them."""
    folder.mkdir(exist_ok=True)
    lines = (vep_data / TABLE_NAME).read_text().splitlines()
    header, body = lines[0], [line.split("\t") for line in lines[1 : rows + 1]]
    if edit:
        edit(body)
    (folder / TABLE_NAME).write_text("\n".join([header, *("\t".join(fields) for fields in body)]) + "\n")
    (folder / FASTA_NAME).symlink_to(vep_data / FASTA_NAME)
    return folder


def test_auroc_auprc_and_spearman_equal_scikit_learn_and_scipy_on_the_same_scores(models, subset):
    score = model_score("llr", models[0], subset, WINDOW, False, 32, "cpu")
    labels = subset.is_lof
    assert 0 < labels.sum() < len(labels)
    metrics = binary_metrics(labels, score.damage, subset.function_score)
    # A more negative llr is more damaging: the damage score is -llr.
    np.testing.assert_array_equal(score.damage, -score.raw)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(labels, -score.raw), abs=1e-12)
    assert metrics["auprc"] == pytest.approx(average_precision_score(labels, -score.raw), abs=1e-12)
    assert metrics["spearman"] == pytest.approx(spearmanr(score.raw, subset.function_score).statistic, abs=1e-12)
    assert (metrics["n"], metrics["n_lof"]) == (len(labels), int(labels.sum()))


def test_the_llr_splits_into_a_site_part_and_a_within_site_part(full):
    llr = np.random.default_rng(0).normal(size=len(full.variants))
    site_mean, deviation = site_parts(full, llr)
    np.testing.assert_allclose(site_mean + deviation, llr)
    positions = np.array([v.position for v in full.variants])
    shared = positions == positions[0]
    assert shared.sum() == 3  # saturation: all three alternatives of the first position
    assert np.all(site_mean[shared] == pytest.approx(llr[shared].mean()))
    assert deviation[shared].sum() == pytest.approx(0, abs=1e-12)
    # A score that depends only on the position has no within-site signal: every deviation is 0, AUROC 0.5.
    assert llr_parts_auroc(full, positions.astype(float))["within_site"] == 0.5


def test_the_tables_own_baselines_give_the_published_aurocs(full):
    table = full
    cadd = binary_metrics(table.is_lof, table.baselines["cadd"], table.function_score)
    phylop = binary_metrics(table.is_lof, table.baselines["phylop_mammal"], table.function_score)
    assert (cadd["n"], cadd["n_lof"]) == (3893, 823)
    assert round(cadd["auroc"], 3) == 0.804  # the data README's figures, LOF vs FUNC + INT
    assert round(phylop["auroc"], 3) == 0.781


def test_llr_equals_a_hand_computation_from_the_logits_on_both_strands(models, subset, fasta):
    forward = model_score("llr", models[0], subset, WINDOW, False, 32, "cpu")
    averaged = model_score("llr", models[0], subset, WINDOW, True, 32, "cpu")
    generator = NucELGenerator.from_pretrained(models[0]).eval()
    tokenizer = load_tokenizer(models[0])

    def masked_llr(window: str, index: int, ref: str, alt: str) -> float:
        ids = tokenizer(window, return_tensors="pt")["input_ids"]  # [CLS] then one token per base
        assert window[index] == ref
        ids[0, 1 + index] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = generator(input_ids=ids).logits[0, 1 + index, list(BASE_IDS)].double()
        log_probs = torch.log_softmax(logits, -1)
        return float(log_probs["ACGT".index(alt)] - log_probs["ACGT".index(ref)])

    row = int(np.flatnonzero(subset.is_lof)[0])
    variant = subset.variants[row]
    index = variant.position - FIRST_POSITION  # 1-based chromosome position -> 0-based FASTA index
    window = fasta[index - WINDOW // 2 : index + WINDOW // 2]  # the variant at WINDOW // 2
    by_hand = masked_llr(window, WINDOW // 2, variant.ref, variant.alt)
    other_strand = masked_llr(
        reverse_complement(window),
        WINDOW - 1 - WINDOW // 2,
        reverse_complement(variant.ref),
        reverse_complement(variant.alt),
    )
    assert by_hand != pytest.approx(other_strand)
    assert forward.raw[row] == pytest.approx(by_hand, abs=1e-5)
    assert averaged.raw[row] == pytest.approx((by_hand + other_strand) / 2, abs=1e-5)


def test_embedding_distance_is_positive_and_is_the_damage_score(models, subset):
    score = model_score("embedding distance", models[1], subset, WINDOW, False, 32, "cpu")
    assert score.damage.shape == (len(subset.variants),) and np.all(score.damage > 0)
    np.testing.assert_array_equal(score.damage, score.raw)  # larger distance = more damaging


def test_a_ref_mismatch_is_a_clear_error_or_counted_and_excluded_on_request(vep_data, fasta, tmp_path, capsys):
    def wrong_ref(rows):
        rows[2][2] = "G" if rows[2][2] != "G" else "C"  # column 3 is ref; rows[2] is line 4 of the file

    folder = small_table(vep_data, tmp_path / "data", wrong_ref)
    table_ref = (folder / TABLE_NAME).read_text().splitlines()[3].split("\t")
    position, ref = int(table_ref[1]), table_ref[2]
    found = fasta[position - FIRST_POSITION]
    expected = (
        f"{TABLE_NAME} line 4: REF mismatch at chr17:{position} (1-based; FASTA index {position - FIRST_POSITION}): "
        f"the table has {ref}, the FASTA has {found}"
    )
    with pytest.raises(VepError) as error:
        load_sge_table(folder / TABLE_NAME, folder / FASTA_NAME)
    assert str(error.value).startswith(expected) and "--exclude-ref-mismatches" in str(error.value)

    table = load_sge_table(folder / TABLE_NAME, folder / FASTA_NAME, exclude_ref_mismatches=True)
    assert len(table.variants) == 4 and table.ref_checked == 5 and table.excluded == [expected]

    # The command line: one line on stderr, exit code 2, no traceback.
    assert (
        nucel_main(["vep", "--data", str(folder), "--output", str(tmp_path / "out" / "vep"), "--bootstrap", "0"]) == 2
    )
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and expected in message and "Traceback" not in message
    assert not (tmp_path / "out").exists()


def test_a_fasta_off_by_one_base_fails_the_ref_check(vep_data, fasta, tmp_path):
    folder = small_table(vep_data, tmp_path / "data")
    # The same sequence declared one base further along, as a 0-based/1-based mix-up would place it.
    (folder / FASTA_NAME).unlink()
    (folder / FASTA_NAME).write_text(f">chr17:{FIRST_POSITION + 1}-{FIRST_POSITION + len(fasta)}\n{fasta}\n")
    first = (folder / TABLE_NAME).read_text().splitlines()[1].split("\t")
    assert fasta[int(first[1]) - FIRST_POSITION - 1] != first[2]  # the neighbouring base differs: the shift shows
    with pytest.raises(VepError, match=rf"line 2: REF mismatch at chr17:{first[1]} .*the table has {first[2]}"):
        load_sge_table(folder / TABLE_NAME, folder / FASTA_NAME)


def test_a_window_that_cannot_be_centred_is_refused(subset):
    with pytest.raises(VepError, match=r"--window 50000 does not fit centred around .*; use --window \d+ or less"):
        check_window(subset, 50000)
    check_window(subset, 8192)  # the Evo 2 notebook's windows fit (data README: up to 32 kb)


def test_the_consequence_breakdown_partitions_the_variants(full):
    table = full
    groups = by_consequence(table, table.baselines["cadd"])
    assert {name: metrics["n"] for name, metrics in groups.items()} == {
        "missense": 2086,
        "synonymous": 544,
        "intronic": 489,
        "splice region": 446,
        "canonical splice": 143,
        "nonsense": 138,
        "5' UTR": 47,
    }  # the data README's counts
    assert sum(m["n"] for m in groups.values()) == len(table.variants) == 3893
    assert sum(m["n_lof"] for m in groups.values()) == int(table.is_lof.sum()) == 823
    assert groups["5' UTR"]["auroc"] is None  # no LOF variant there: undefined, not a number
    missense = np.array(table.consequences) == "missense"
    assert groups["missense"]["auroc"] == pytest.approx(
        roc_auc_score(table.is_lof[missense], table.baselines["cadd"][missense])
    )


def test_the_command_writes_the_report_the_json_and_the_figure(vep_data, models, tmp_path):
    output = tmp_path / "results" / "vep"
    argv = [
        "--data",
        str(vep_data),
        "--generator",
        models[0],
        "--model",
        models[1],
        "--window",
        str(WINDOW),
        "--max-variants",
        "60",
        "--bootstrap",
        "20",
        "--device",
        "cpu",
        "--output",
        str(output),
    ]
    assert nucel_main(["vep", *argv]) == 0
    report = json.loads((output / "vep-brca1.json").read_text())
    assert [r["kind"] for r in report["results"]] == ["llr", "embedding distance", "baseline", "baseline"]
    assert report["data"]["ref_checked"] == 60 and report["data"]["ref_excluded"] == []
    table = load_sge_table(vep_data / TABLE_NAME, vep_data / FASTA_NAME, max_variants=60)
    cadd = next(r for r in report["results"] if r["name"] == "CADD")
    assert cadd["overall"]["auroc"] == pytest.approx(roc_auc_score(table.is_lof, table.baselines["cadd"]))
    generator = report["results"][0]["provenance"]
    assert generator["class"] == "NucELGenerator" and len(generator["sha256"]) == 64
    markdown = (output / "vep-brca1.md").read_text()
    assert (
        "--max-variants 60" in markdown and "Evo 2 (1B base)" in markdown and "quoted from the literature" in markdown
    )
    assert (output / "vep-brca1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nucel_benchmark_runs_the_vep_suite(vep_data, models, tmp_path, capsys):
    """`nucel-benchmark --suite vep …` (the earlier program, kept as an alias) is `nucel vep`: same options, same
    report, the command's name in errors."""
    output = tmp_path / "vep"
    argv = [
        "--suite",
        "vep",
        "--data",
        str(vep_data),
        "--generator",
        models[0],
        "--window",
        str(WINDOW),
        "--max-variants",
        "30",
        "--bootstrap",
        "10",
        "--device",
        "cpu",
        "--output",
        str(output),
    ]
    assert benchmark_alias(argv) == 0
    assert f"vep --data {vep_data} --generator" in (output / "vep-brca1.md").read_text()  # the command as run
    capsys.readouterr()
    assert benchmark_alias(["--suite", "vep", "--generator", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("nucel vep: error:")


def test_a_model_reached_through_a_link_is_named_as_the_user_named_it(models, tmp_path, monkeypatch):
    """A study's work folder is often a link to a scratch disk: the report names the link, not the machine's disk."""
    from nucel.benchmarks import vep
    from nucel.core import files

    encoder = Path(models[1])
    monkeypatch.setattr(files, "REPOSITORY", tmp_path / "repository")
    (tmp_path / "repository" / "runs").mkdir(parents=True)
    (tmp_path / "repository" / "runs" / "study").symlink_to(encoder.parent)
    linked = tmp_path / "repository" / "runs" / "study" / encoder.name
    identity = vep.model_identity(str(linked), NucELModel.from_pretrained(linked))
    assert identity["path"] == f"runs/study/{encoder.name}"
