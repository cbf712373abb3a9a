"""Unit tests for hfkit.teacher_cache.classifier on a tiny random BERT teacher and a word-level tokenizer (no Hub)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct

import pytest
import torch
from datasets import ClassLabel, Dataset
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification, BertTokenizerFast

from hfkit.data import tokenize_dataset
from hfkit.errors import UserInputError
from hfkit.teacher_cache import (
    TEACHER_LOGITS_COLUMN,
    add_teacher_logits,
    compute_teacher_logits,
    teacher_fingerprint,
    teacher_logits_for_texts,
)
from tests.conftest import tiny_bert_config

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "big",
    "small",
    "red",
    "blue",
    "runs",
    "jumps",
    "quickly",
    "slowly",
    "and",
    "over",
    "under",
]
TEXTS = [
    "the cat sat",
    "a big red dog runs quickly over the small blue mat and jumps",
    "dog",
    "the small cat jumps over the dog",
    "a cat and a dog sat on the mat",
    "red",
    "the blue dog runs slowly under the big red mat and the cat sat on the dog",
]
NUM_LABELS = 3


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab=str(vocab))


def make_teacher(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_bert_config(vocab_size=32, hidden=16, layers=2, num_labels=NUM_LABELS)
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def teacher() -> BertForSequenceClassification:
    return make_teacher()


@pytest.fixture(scope="module")
def raw() -> Dataset:
    return Dataset.from_dict({"text": TEXTS, "labels": [i % NUM_LABELS for i in range(len(TEXTS))]})


@pytest.fixture(scope="module")
def tokenized(raw, tokenizer) -> Dataset:
    return tokenize_dataset(raw, tokenizer, "text", max_length=32)


def count_forwards(model: torch.nn.Module) -> list[int]:
    """Count teacher forward calls through a hook; returns a one-element list that the hook increments."""
    calls = [0]

    def hook(*_):
        calls[0] += 1

    model.register_forward_hook(hook)
    return calls


def cache_files(cache_dir) -> list[str]:
    return sorted(f for f in os.listdir(cache_dir) if f.endswith(".safetensors"))


def test_logits_match_unpadded_per_row_forward_in_order(teacher, tokenized, tokenizer):
    # batch_size=3 with rows of very different lengths: every batch is padded, rows are sorted by length.
    logits = compute_teacher_logits(teacher, tokenized, tokenizer, cache_dir=None, batch_size=3)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert logits.shape == (len(TEXTS), NUM_LABELS)
    with torch.no_grad():
        for i, row in enumerate(tokenized):
            inputs = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            torch.testing.assert_close(logits[i], teacher(**inputs).logits[0], atol=1e-5, rtol=0)


def test_order_follows_the_dataset_and_teacher_mode_is_restored(teacher, tokenized, tokenizer, tmp_path):
    base = compute_teacher_logits(teacher, tokenized, tokenizer, cache_dir=str(tmp_path), batch_size=2)
    perm = [6, 2, 0, 5, 1, 4, 3]
    # A selected view (indices mapping over the same table), in a format the collator cannot pad itself.
    selected = tokenized.select(perm).with_format("torch")
    teacher.train()
    shuffled = compute_teacher_logits(teacher, selected, tokenizer, cache_dir=str(tmp_path), batch_size=2)
    assert teacher.training  # put back as found
    torch.testing.assert_close(shuffled, base[perm], atol=1e-5, rtol=0)  # also: dropout was off
    assert len(cache_files(tmp_path)) == 2  # a reordering is other data, not a hit
    cached = compute_teacher_logits(teacher, selected, tokenizer, cache_dir=str(tmp_path))
    torch.testing.assert_close(cached, shuffled, atol=0, rtol=0)


def test_cache_hit_does_not_run_the_teacher(teacher, tokenized, tokenizer, tmp_path, caplog):
    calls = count_forwards(teacher)
    with caplog.at_level(logging.INFO, logger="hfkit.teacher_cache.classifier"):
        first = compute_teacher_logits(teacher, tokenized, tokenizer, cache_dir=str(tmp_path), batch_size=4)
        assert calls[0] == 2 and "built" in caplog.text
        caplog.clear()
        second = compute_teacher_logits(teacher, tokenized, tokenizer, cache_dir=str(tmp_path), batch_size=4)
    assert calls[0] == 2  # no new forward
    assert "hit" in caplog.text and str(tmp_path) in caplog.text
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert len(cache_files(tmp_path)) == 1
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]  # temp file was renamed away


def test_bf16_pass_is_close_to_float32_and_cached_under_its_own_key(teacher, tokenized, tokenizer, tmp_path):
    full = compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path), batch_size=3)
    calls = count_forwards(teacher)
    half = compute_teacher_logits(
        teacher, tokenized, tokenizer, str(tmp_path), 3, autocast_dtype=torch.bfloat16
    )
    assert calls[0] == 3  # the float32 cache does not stand in for a bf16 pass
    assert half.dtype == torch.float32 and not torch.equal(
        half, full
    )  # computed in bf16, returned as float32
    torch.testing.assert_close(half, full, atol=0.05, rtol=0.05)
    again = compute_teacher_logits(
        teacher, tokenized, tokenizer, str(tmp_path), 3, autocast_dtype=torch.bfloat16
    )
    assert calls[0] == 3 and torch.equal(again, half)  # a bf16 hit
    assert len(cache_files(tmp_path)) == 2
    with (
        safe_open(os.path.join(tmp_path, cache_files(tmp_path)[0]), "pt") as a,
        safe_open(os.path.join(tmp_path, cache_files(tmp_path)[1]), "pt") as b,
    ):
        dtypes = {(a.metadata() or {}).get("autocast_dtype"), (b.metadata() or {}).get("autocast_dtype")}
    assert dtypes == {None, "bfloat16"}  # a float32 pass keeps the key parts it always had


def test_changed_weights_data_or_max_length_rebuild(teacher, raw, tokenized, tokenizer, tmp_path):
    compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path))
    calls = count_forwards(teacher)

    with torch.no_grad():
        teacher.classifier.bias[0] += 0.5
    changed = compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path))
    assert calls[0] == 1 and len(cache_files(tmp_path)) == 2

    edited = raw.map(lambda row, i: {"text": "dog dog" if i == 3 else row["text"]}, with_indices=True)
    edited_tok = tokenize_dataset(edited, tokenizer, "text", max_length=32)
    compute_teacher_logits(teacher, edited_tok, tokenizer, str(tmp_path))
    assert calls[0] == 2 and len(cache_files(tmp_path)) == 3

    short = tokenize_dataset(raw, tokenizer, "text", max_length=6)
    truncated = compute_teacher_logits(teacher, short, tokenizer, str(tmp_path))
    assert calls[0] == 3 and len(cache_files(tmp_path)) == 4
    assert not torch.allclose(truncated[1], changed[1])  # row 1 is longer than 6 tokens

    # Back to the changed weights on the original data: a hit again.
    compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path))
    assert calls[0] == 3


def test_teacher_fingerprint_tracks_weights_not_object_identity():
    assert teacher_fingerprint(make_teacher(0)) == teacher_fingerprint(make_teacher(0))
    assert teacher_fingerprint(make_teacher(0)) != teacher_fingerprint(make_teacher(1))


def overwrite_tensor_bytes(path, tensor: torch.Tensor) -> None:
    """Replace the raw tensor bytes of a one-tensor safetensors file, header (and metadata) intact."""
    data = path.read_bytes()
    start = 8 + struct.unpack("<Q", data[:8])[0]
    raw = tensor.contiguous().numpy().tobytes()
    assert len(raw) == len(data) - start
    path.write_bytes(data[:start] + raw)


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "wrong_shape", "wrong_metadata", "overwritten_bytes", "nan"]
)
def test_corrupt_or_edited_cache_is_detected_and_rebuilt(
    damage, teacher, tokenized, tokenizer, tmp_path, caplog
):
    good = compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path))
    (name,) = cache_files(tmp_path)
    path = tmp_path / name
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif damage == "overwritten_bytes":  # finite, right shape and dtype, key intact: only a digest can tell
        overwrite_tensor_bytes(path, good + 1.0)
    elif damage == "nan":
        overwrite_tensor_bytes(path, torch.full_like(good, float("nan")))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    else:
        meta = json.loads(path.read_bytes()[8 : 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])[
            "__metadata__"
        ]
        if damage == "wrong_shape":
            save_file({"logits": torch.zeros(len(TEXTS) - 1, NUM_LABELS)}, str(path), metadata=meta)
        else:
            save_file({"logits": torch.zeros_like(good)}, str(path), metadata={**meta, "content_sha256": "x"})
    calls = count_forwards(teacher)
    with caplog.at_level(logging.WARNING, logger="hfkit.teacher_cache.classifier"):
        rebuilt = compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path))
    assert calls[0] == 1 and "rebuilding" in caplog.text
    if damage == "nan":
        assert "non-finite values" in caplog.text  # reported as a bad cache, not left to the loss
    torch.testing.assert_close(rebuilt, good, atol=1e-6, rtol=0)
    torch.testing.assert_close(load_file(str(path))["logits"], good, atol=1e-6, rtol=0)  # file repaired


def test_teacher_with_non_finite_logits_is_an_error_and_not_cached(tokenized, tokenizer, tmp_path):
    broken = make_teacher()
    with torch.no_grad():
        broken.classifier.bias[1] = float("nan")
    with pytest.raises(UserInputError, match=r"non-finite logits .* 7 of 7 rows"):
        compute_teacher_logits(broken, tokenized, tokenizer, str(tmp_path))
    assert cache_files(tmp_path) == []


def test_cache_dir_that_is_a_file_is_one_clear_error(teacher, tokenized, tokenizer, tmp_path):
    not_a_folder = tmp_path / "cache.safetensors"
    not_a_folder.write_text("x")
    with pytest.raises(UserInputError, match=r"teacher_logits_cache .*cache.safetensors.* is a file"):
        compute_teacher_logits(teacher, tokenized, tokenizer, str(not_a_folder))


def test_cache_file_is_plain_safetensors_without_pickle(teacher, tokenized, tokenizer, tmp_path):
    logits = compute_teacher_logits(teacher, tokenized, tokenizer, str(tmp_path))
    (name,) = cache_files(tmp_path)
    data = (tmp_path / name).read_bytes()
    torch.testing.assert_close(load_file(str(tmp_path / name))["logits"], logits, atol=0, rtol=0)
    # safetensors layout: u64 header size, JSON header, raw tensor bytes -- and nothing else.
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_len])
    assert set(header) == {"logits", "__metadata__"}
    assert header["logits"]["dtype"] == "F32" and header["logits"]["shape"] == [len(TEXTS), NUM_LABELS]
    assert len(data) == 8 + header_len + len(TEXTS) * NUM_LABELS * 4
    assert not data.startswith((b"PK", b"\x80"))  # neither a torch.save zip nor a raw pickle
    meta = header["__metadata__"]
    assert meta["num_rows"] == str(len(TEXTS)) and meta["num_labels"] == str(NUM_LABELS)
    assert meta["dataset_fingerprint"] == tokenized._fingerprint
    # The digest covers name, dtype, shape and every byte of the tensor.
    described = f"logits|torch.float32|({len(TEXTS)}, {NUM_LABELS})".encode()
    assert meta["tensors_sha256"] == hashlib.sha256(described + data[8 + header_len :]).hexdigest()
    assert name == f"teacher-logits-{meta['key']}.safetensors"


def test_add_teacher_logits_round_trip_and_row_count_error(tokenized):
    logits = torch.randn(len(TEXTS), NUM_LABELS)
    ds = add_teacher_logits(tokenized, logits)
    assert ds.features[TEACHER_LOGITS_COLUMN].feature.dtype == "float32"
    torch.testing.assert_close(torch.tensor(ds[TEACHER_LOGITS_COLUMN]), logits, atol=0, rtol=0)
    assert list(ds["input_ids"]) == list(tokenized["input_ids"])
    # Adding again replaces the column instead of failing on a duplicate name.
    again = add_teacher_logits(ds, logits * 2)
    torch.testing.assert_close(torch.tensor(again[TEACHER_LOGITS_COLUMN]), logits * 2, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"logits have 6 rows but the dataset has 7"):
        add_teacher_logits(tokenized, logits[:-1])
    with pytest.raises(ValueError, match=r"\(rows, num_labels\), or \(rows, num_teachers"):
        add_teacher_logits(tokenized, logits[:, 0])
    # Several teachers: one (num_teachers, num_labels) row per example.
    several = torch.randn(len(TEXTS), 2, NUM_LABELS)
    ds = add_teacher_logits(tokenized, several)
    torch.testing.assert_close(torch.tensor(ds[TEACHER_LOGITS_COLUMN]), several, atol=0, rtol=0)
    assert ds.features[TEACHER_LOGITS_COLUMN].feature.feature.dtype == "float32"


def test_untokenized_dataset_is_rejected(teacher, raw, tokenizer):
    with pytest.raises(ValueError, match="tokenized dataset"):
        compute_teacher_logits(teacher, raw, tokenizer, cache_dir=None)


def test_teacher_logits_for_texts_feeds_a_student_dataset(teacher, raw, tokenizer, tmp_path):
    # The teacher-side tokenization here uses a shorter max_length than the student's, as with two tokenizers.
    raw = raw.cast_column("labels", ClassLabel(num_classes=NUM_LABELS))
    calls = count_forwards(teacher)
    logits = teacher_logits_for_texts(teacher, tokenizer, raw, "text", max_length=10, cache_dir=str(tmp_path))
    direct = compute_teacher_logits(
        teacher, tokenize_dataset(raw, tokenizer, "text", max_length=10), tokenizer, cache_dir=None
    )
    torch.testing.assert_close(logits, direct, atol=0, rtol=0)
    again = teacher_logits_for_texts(teacher, tokenizer, raw, "text", max_length=10, cache_dir=str(tmp_path))
    assert calls[0] == 2  # one build + the direct run; the second call was a cache hit
    torch.testing.assert_close(again, logits, atol=0, rtol=0)
    student = add_teacher_logits(tokenize_dataset(raw, tokenizer, "text", max_length=32), logits)
    assert student.column_names[-1] == TEACHER_LOGITS_COLUMN and len(student) == len(TEXTS)
