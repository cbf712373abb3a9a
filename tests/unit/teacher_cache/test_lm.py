"""Unit tests for hfkit.teacher_cache.lm: top-k values/indices round trip, stale or damaged files rebuilt."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hfkit.data.lm import TOPK_INDICES, TOPK_VALUES, LMDataArguments, build_lm_dataset
from hfkit.errors import UserInputError
from hfkit.teacher_cache.lm import add_teacher_topk, teacher_topk_logits
from tests.unit.data.test_lm import tiny_llama, word_tokenizer

K = 4


@pytest.fixture(scope="module")
def data() -> Dataset:
    rows = {
        "prompt": ["question w1 w2", "hello", "question w3"],
        "response": ["answer w4 w5 w6", "world", "w7"],
    }
    return build_lm_dataset(
        Dataset.from_dict(rows), word_tokenizer(), LMDataArguments(train_file="x.txt"), 32, False
    )


@pytest.fixture(scope="module")
def teacher():
    return tiny_llama(seed=1).eval()


def cache_files(folder):
    return sorted(folder.glob("lm-teacher-topk-*.safetensors"))


def test_round_trip_stores_each_real_token_top_k(tmp_path, data, teacher, caplog):
    caplog.set_level(logging.INFO, logger="hfkit.teacher_cache.lm")
    built = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path), batch_size=2)
    (path,) = cache_files(tmp_path)
    assert "cache built" in caplog.text
    lengths = [len(ids) for ids in data["input_ids"]]
    assert built.lengths.tolist() == lengths
    assert built.values.shape == (sum(lengths), K) and built.values.dtype == torch.float32
    assert built.indices.dtype == torch.int32
    # Row by row, unpadded, equal to the teacher's own top-k (batching and padding change nothing).
    start = 0
    with torch.no_grad():
        for ids in data["input_ids"]:
            top = teacher(input_ids=torch.tensor([ids])).logits[0].topk(K, dim=-1)
            assert torch.allclose(built.values[start : start + len(ids)], top.values, atol=1e-5)
            assert torch.equal(built.indices[start : start + len(ids)], top.indices.int())
            start += len(ids)
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["indices", "lengths", "values"] and f.metadata()["topk"] == str(K)

    caplog.clear()
    loaded = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    assert "cache hit" in caplog.text
    assert torch.equal(loaded.values, built.values) and torch.equal(loaded.indices, built.indices)


def test_key_changes_with_teacher_data_and_k(tmp_path, data, teacher):
    teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    teacher_topk_logits(tiny_llama(seed=2), data, K, cache_dir=str(tmp_path))
    teacher_topk_logits(teacher, data, K + 1, cache_dir=str(tmp_path))
    teacher_topk_logits(teacher, data.select([0, 1]), K, cache_dir=str(tmp_path))
    assert len(cache_files(tmp_path)) == 4


def test_edited_file_is_rebuilt_not_trusted(tmp_path, data, teacher, caplog):
    good = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    (path,) = cache_files(tmp_path)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    # An id outside the vocabulary is provably wrong (edited values alone are not: the key vouches for them).
    tensors["indices"][0, 0] = 10_000
    save_file(tensors, str(path), metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="hfkit.teacher_cache.lm"):
        rebuilt = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    assert "does not match (token ids outside [0, 56))" in caplog.text
    assert torch.equal(rebuilt.values, good.values) and torch.equal(rebuilt.indices, good.indices)

    save_file(tensors, str(path), metadata={**metadata, "content_sha256": "stale"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hfkit.teacher_cache.lm"):
        teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    assert "content_sha256: stored 'stale'" in caplog.text
    path.write_bytes(b"not a safetensors file")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hfkit.teacher_cache.lm"):
        again = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    assert "unreadable" in caplog.text and torch.equal(again.values, good.values)


def test_overwritten_values_are_caught_by_the_digest(tmp_path, data, teacher, caplog):
    good = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    (path,) = cache_files(tmp_path)
    raw = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    values = good.values.numpy().tobytes()
    at = bytes(raw).index(values, header)  # the values tensor's bytes; header and metadata stay as they are
    raw[at : at + 4] = torch.tensor([123.0]).numpy().tobytes()
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="hfkit.teacher_cache.lm"):
        rebuilt = teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path))
    assert "tensors_sha256" in caplog.text and "rebuilding" in caplog.text
    assert torch.equal(rebuilt.values, good.values)


def test_cache_dir_that_is_a_file_is_one_clear_error(tmp_path, data, teacher):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserInputError, match="is a file"):
        teacher_topk_logits(teacher, data, K, cache_dir=str(tmp_path / "f"))


def test_add_teacher_topk_aligns_rows_and_rejects_other_rows(data, teacher):
    topk = teacher_topk_logits(teacher, data, K)
    with_topk = add_teacher_topk(data, topk)
    row = with_topk[1]
    assert len(row[TOPK_VALUES]) == len(row["input_ids"]) and len(row[TOPK_VALUES][0]) == K
    first = len(data[0]["input_ids"])
    assert row[TOPK_INDICES][0] == topk.indices[first].tolist()
    with pytest.raises(ValueError, match="compute them on this split, before any shuffle/select/filter"):
        add_teacher_topk(data.select([1, 0, 2]), topk)


def test_k_larger_than_the_vocabulary_is_an_error(data, teacher):
    with pytest.raises(ValueError, match=r"k must be in \[1, 56\]"):
        teacher_topk_logits(teacher, data, 57)
