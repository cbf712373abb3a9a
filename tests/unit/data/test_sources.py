"""Tests for hfkit.data.sources: the arguments and loading every task's data shares."""

from __future__ import annotations

import pytest
from datasets import Dataset

from hfkit.data import DataArguments, DataSourceArguments, LMDataArguments, load_data_file
from hfkit.data.sources import load_raw_datasets, row_lengths, subsample


@pytest.mark.parametrize("cls", [DataArguments, LMDataArguments])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "No data given"),
        ({"train_file": "t.csv", "validation_split": 1.0}, "validation_split must be in"),
        ({"train_file": "t.csv", "max_train_samples": 0}, "max_train_samples must be a positive"),
        ({"train_file": "t.csv", "max_eval_samples": -1}, "max_eval_samples must be a positive"),
    ],
)
def test_both_tasks_share_the_source_checks(cls, kwargs, message):
    assert issubclass(cls, DataSourceArguments)
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_txt_rows_by_line_or_by_document(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("one\ntwo\n\nthree\n")
    assert load_data_file(str(path))["text"] == ["one", "two", "", "three"]
    by_document = load_raw_datasets(DataSourceArguments(train_file=str(path)), text_sample_by="document")
    assert by_document["train"]["text"] == ["one\ntwo\n\nthree\n"]


def test_subsample_and_row_lengths():
    ds = Dataset.from_dict({"input_ids": [[1], [1, 2, 3], [], [4, 5]]})
    assert row_lengths(ds).tolist() == [1, 3, 0, 2]
    assert subsample(ds, None, 0) is ds and subsample(ds, 9, 0) is ds
    picked = subsample(ds, 2, seed=0)
    assert len(picked) == 2 and picked["input_ids"] == subsample(ds, 2, seed=0)["input_ids"]
