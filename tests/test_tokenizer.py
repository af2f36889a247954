"""The 27-token tokenizer: the released NucEL-93M's ids and template
(docs/design.md, "The vocabulary: the released model's ids"), DNA normalisation, specials, saving, helpers."""

import logging

import pytest
import torch
from transformers import AutoTokenizer

from nucel.modeling_nucel.configuration_nucel import BASE_IDS, CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE
from nucel.tokenization import (
    MODEL_MAX_LENGTH,
    InvalidDNAError,
    reverse_complement,
    reverse_complement_ids,
    save_tokenizer,
    token_length,
    validate_dna,
    with_special_tokens,
)

EXPECTED_IDS = {
    "[PAD]": 0,
    "[UNK]": 1,
    "[CLS]": 2,
    "[SEP]": 3,
    "[MASK]": 4,
    "[BOS]": 5,
    "[EOS]": 6,
    "A": 11,
    "C": 12,
    "G": 13,
    "T": 14,
}
A, C, G, T = 11, 12, 13, 14


def test_vocabulary_ids_are_the_fixed_ones(tokenizer):
    assert len(tokenizer) == VOCAB_SIZE == 27
    for token, token_id in EXPECTED_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert tokenizer.pad_token_id == PAD_ID and tokenizer.mask_token_id == MASK_ID
    assert tokenizer.cls_token_id == CLS_ID and tokenizer.sep_token_id == SEP_ID and tokenizer.unk_token_id == UNK_ID
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]


def test_one_base_one_token_after_cls_and_no_sep(tokenizer):
    sequence = "ACGTTGCA" * 25
    ids = tokenizer(sequence)["input_ids"]
    assert len(ids) == len(sequence) + 1 == token_length(len(sequence))
    assert ids[0] == CLS_ID and SEP_ID not in ids
    assert ids[1:] == [EXPECTED_IDS[base] for base in sequence]
    assert with_special_tokens(ids[1:]) == ids


def test_unused_and_reserved_rows_are_named(tokenizer):
    assert tokenizer.convert_ids_to_tokens(list(range(7, 11))) == [f"[UNUSED_{i}]" for i in range(4)]
    assert tokenizer.convert_ids_to_tokens([15, 26]) == ["[RESERVED_0]", "[RESERVED_11]"]


def test_lowercase_is_uppercased_and_iupac_codes_are_unknown(tokenizer):
    assert tokenizer("acgt")["input_ids"] == tokenizer("ACGT")["input_ids"]
    assert tokenizer("ANRYC")["input_ids"][1:] == [A, UNK_ID, UNK_ID, UNK_ID, C]
    assert tokenizer("n")["input_ids"][1:] == [UNK_ID]


def test_whitespace_and_newlines_inside_a_pasted_sequence_are_ignored(tokenizer):
    assert tokenizer("AC GT\nAC\tGT\r\n")["input_ids"] == tokenizer("ACGTACGT")["input_ids"]


def test_specials_are_atomic(tokenizer):
    ids = tokenizer("AC[MASK]GT")["input_ids"]
    assert ids == [CLS_ID, A, C, MASK_ID, G, T]


def test_pairs_are_separated_by_sep(tokenizer):
    encoded = tokenizer("AC", "GT")
    assert encoded["input_ids"] == [CLS_ID, A, C, SEP_ID, G, T]


def test_offsets_map_tokens_back_to_the_input(tokenizer):
    text = "ac g\nT"
    encoded = tokenizer(text, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"][1:]
    assert [text[start:end] for start, end in offsets] == ["a", "c", "g", "T"]


def test_decode_round_trip(tokenizer):
    sequence = "GATTACA" * 10
    ids = tokenizer(sequence)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == sequence
    assert tokenizer.decode(tokenizer("ACNGT")["input_ids"][1:]) == "ACNGT"  # [UNK] decodes as N


def test_empty_sequence(tokenizer):
    assert tokenizer("")["input_ids"] == [CLS_ID]
    with pytest.raises(InvalidDNAError, match="empty sequence"):
        validate_dna("  \n")


def test_long_sequences_warn_and_truncate_only_when_asked(tokenizer, caplog):
    sequence = "A" * (MODEL_MAX_LENGTH + 50)
    with caplog.at_level(logging.WARNING):
        ids = tokenizer(sequence)["input_ids"]
    assert len(ids) == len(sequence) + 1  # nothing silently dropped
    assert any("longer than the specified maximum" in record.getMessage() for record in caplog.records)
    truncated = tokenizer(sequence, truncation=True)["input_ids"]
    assert len(truncated) == MODEL_MAX_LENGTH == 1025 and truncated[-1] == A


def test_batch_padding_is_right_sided(tokenizer):
    batch = tokenizer(["ACGT", "AC"], padding=True, return_tensors="pt")
    assert batch["input_ids"][1].tolist() == [CLS_ID, A, C, PAD_ID, PAD_ID]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0]


@pytest.mark.parametrize(
    "text, character, position",
    [
        (">chr1 test\nACGT", ">", 1),
        ("ACGT123", "1", 5),
        ("MKVLAAGIVG", "L", 4),  # protein letters: M, K, V are IUPAC codes, L is not
        ("ACGU", "U", 4),
        ("AC-GT", "-", 3),
    ],
)
def test_validator_names_the_character_and_position(text, character, position):
    with pytest.raises(InvalidDNAError) as error:
        validate_dna(text, source="input.fa line 3")
    message = str(error.value)
    assert repr(character) in message and f"position {position}" in message and "input.fa line 3" in message


def test_validator_accepts_dna_with_lowercase_iupac_and_whitespace():
    assert validate_dna("acgtN\nRYsw kmbdhv") == "ACGTNRYSWKMBDHV"


def test_reverse_complement_of_strings():
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement("acgT") == "Acgt"  # case is kept
    assert reverse_complement(reverse_complement("GATTACARY")) == "GATTACARY"


def test_reverse_complement_of_token_ids_matches_the_string_helper(tokenizer):
    sequences = ["AACGTNG", "GGTA"]
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    flipped = reverse_complement_ids(batch["input_ids"])
    expected = tokenizer([reverse_complement(s) for s in sequences], padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(flipped, expected)
    assert torch.equal(reverse_complement_ids(flipped), batch["input_ids"])
    single = batch["input_ids"][0]
    assert torch.equal(reverse_complement_ids(single), expected[0])


def test_saved_tokenizer_loads_through_auto_tokenizer_without_custom_code(tokenizer, tmp_path):
    save_tokenizer(tokenizer, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "acgtN[MASK]GG"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.model_max_length == MODEL_MAX_LENGTH
    assert '"tokenizer_class": "PreTrainedTokenizerFast"' in (tmp_path / "tokenizer_config.json").read_text()
    assert BASE_IDS == (A, C, G, T)
