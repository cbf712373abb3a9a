"""Tests for hfkit.data.classification: loading every file format, label encoding, the seeded split, tokenization, errors.

Everything runs offline on small files written to tmp_path and a tiny WordPiece tokenizer built from a
vocab.txt; the only real data is ../shared/data/sst2/train.tsv, which is loaded but not tokenized.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict
from transformers import BertTokenizerFast

from hfkit.data import (
    DataArguments,
    load_classification_data,
    load_data_file,
    load_raw_datasets,
    tokenize_dataset,
)
from hfkit.errors import MissingInputError, UserInputError

SST2_TRAIN = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "sst2" / "train.tsv"

WORDS = ["good", "bad", "movie", "film", "the", "a", "is", "was", "not", "very", "plot", "actors"]
RECORDS = [
    {"text": "good movie", "label": "pos"},
    {"text": "bad film, really", "label": "neg"},
    {"text": "the plot is very good", "label": "pos"},
]


@pytest.fixture(scope="session", autouse=True)
def _datasets_cache(tmp_path_factory):
    """Keep the arrow files `datasets` writes for each loaded file out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets_cache")))
        yield


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab))
    # transformers 5 ignores `vocab_file=`; make sure the words really are in the vocabulary.
    assert tok.convert_tokens_to_ids(["good", "movie"]) == [5, 7]
    return tok


# --------------------------------------------------------------------------- helpers


def write_csv(path: Path, header: list[str], rows: list[tuple], sep: str = ",") -> str:
    lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def labelled_rows(n_pos: int, n_neg: int) -> list[tuple[str, str]]:
    """Unique texts, labels 'pos' and 'neg' interleaved (pos first so first-seen order != sorted order)."""
    rows = [(f"pos review {i}", "pos") for i in range(n_pos)] + [
        (f"neg review {i}", "neg") for i in range(n_neg)
    ]
    rows.sort(key=lambda r: int(r[0].split()[-1]))
    return rows


def split_args(path: str, **kwargs) -> DataArguments:
    return DataArguments(train_file=path, **kwargs)


def texts(ds: Dataset) -> list[str]:
    return list(ds["text"])


# --------------------------------------------------------------------------- every format loads


def test_csv_loads_with_quoted_comma(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\ngood movie,pos\n"bad film, really",neg\nthe plot is very good,pos\n')
    ds = load_data_file(str(path))
    assert ds.column_names == ["text", "label"]
    assert ds.to_list() == RECORDS


def test_tsv_keeps_bare_quotes_and_row_count(tmp_path):
    sentences = ['he said "hi', '"starts with a quote', 'a "quoted" word', "plain", 'ends with a quote"']
    path = write_csv(
        tmp_path / "d.tsv", ["label", "sentence"], [(i % 2, s) for i, s in enumerate(sentences)], "\t"
    )
    ds = load_data_file(path)
    assert len(ds) == len(sentences)
    assert ds["sentence"] == sentences
    assert ds["label"] == [0, 1, 0, 1, 0]


def _write_json_list(path: Path) -> None:
    path.write_text(json.dumps(RECORDS, indent=2))


def _write_json_lines(path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))


def _write_parquet(path: Path) -> None:
    Dataset.from_dict({k: [r[k] for r in RECORDS] for k in RECORDS[0]}).to_parquet(str(path))


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("d.json", _write_json_list),
        ("d.json", _write_json_lines),
        ("d.jsonl", _write_json_lines),
        ("d.parquet", _write_parquet),
        ("d.JSONL", _write_json_lines),
    ],
    ids=["json-list", "json-lines", "jsonl", "parquet", "upper-case-extension"],
)
def test_json_jsonl_parquet_load(tmp_path, name, writer):
    path = tmp_path / name
    writer(path)
    ds = load_data_file(str(path))
    assert sorted(ds.column_names) == ["label", "text"]
    assert ds.select_columns(["text", "label"]).to_list() == RECORDS


def test_txt_gives_text_column(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text('first line\nsecond "line"\nthird, line\n')
    ds = load_data_file(str(path))
    assert ds.column_names == ["text"]
    assert ds["text"] == ["first line", 'second "line"', "third, line"]


def test_real_sst2_train_file():
    if not SST2_TRAIN.is_file():
        pytest.skip(f"{SST2_TRAIN} not present")
    ds = load_data_file(str(SST2_TRAIN))
    assert len(ds) == 67_349
    assert ds.column_names == ["label", "text_a"]
    assert set(ds["label"]) == {0, 1}
    assert all(isinstance(t, str) for t in ds["text_a"][:1000])


def test_load_raw_datasets_train_and_validation(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], labelled_rows(3, 3))
    val = write_csv(tmp_path / "val.csv", ["text", "label"], labelled_rows(1, 1))
    raw = load_raw_datasets(DataArguments(train_file=train, validation_file=val))
    assert isinstance(raw, DatasetDict)
    assert {k: len(v) for k, v in raw.items()} == {"train": 6, "validation": 2}


def test_local_dataset_folder_as_dataset_name(tmp_path):
    folder = tmp_path / "my_data"
    folder.mkdir()
    write_csv(folder / "train.csv", ["text", "label"], labelled_rows(5, 5))
    write_csv(folder / "validation.csv", ["text", "label"], labelled_rows(2, 2))
    data, names = load_classification_data(DataArguments(dataset_name=str(folder)))
    assert names == ["neg", "pos"]
    assert {k: len(v) for k, v in data.items()} == {"train": 10, "validation": 4}


# --------------------------------------------------------------------------- labels


def test_string_labels_become_sorted_classlabel_ids(tmp_path):
    rows = labelled_rows(12, 8)
    assert rows[0][1] == "pos"  # first-seen order would give pos=0
    data, names = load_classification_data(split_args(write_csv(tmp_path / "d.csv", ["text", "label"], rows)))
    assert names == ["neg", "pos"]
    original = dict(rows)
    for split in ("train", "validation"):
        ds = data[split]
        assert ds.column_names == ["text", "labels"]
        assert isinstance(ds.features["labels"], ClassLabel)
        assert ds.features["labels"].names == ["neg", "pos"]
        for text, label in zip(ds["text"], ds["labels"], strict=True):
            assert label == {"neg": 0, "pos": 1}[original[text]]


def test_integer_labels_with_class_names(tmp_path):
    rows = [(f"text {i}", i % 2) for i in range(20)]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    data, names = load_classification_data(split_args(path, class_names=["negative", "positive"]))
    assert names == ["negative", "positive"]
    assert data["train"].features["labels"].names == ["negative", "positive"]
    original = dict(rows)
    for ds in data.values():
        assert [original[t] for t in ds["text"]] == ds["labels"]


def test_integer_labels_without_class_names_are_mapped_to_0_k(tmp_path):
    rows = [(f"text {i}", [10, 2][i % 2]) for i in range(20)]
    data, names = load_classification_data(split_args(write_csv(tmp_path / "d.csv", ["text", "label"], rows)))
    assert names == ["2", "10"]  # numeric order, not string order
    original = dict(rows)
    for ds in data.values():
        assert ds.features["labels"].names == ["2", "10"]
        assert [names[i] for i in ds["labels"]] == [str(original[t]) for t in ds["text"]]


def test_validation_file_uses_training_label_ids(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in labelled_rows(4, 4)))
    # Only 'pos' in validation: encoding with validation's own label set would give pos -> 0.
    val = write_csv(tmp_path / "val.csv", ["text", "label"], [("val one", "pos"), ("val two", "pos")])
    data, names = load_classification_data(DataArguments(train_file=str(train), validation_file=val))
    assert names == ["neg", "pos"]
    assert len(data["train"]) == 8  # no split taken from train
    assert data["validation"]["text"] == ["val one", "val two"]
    assert data["validation"]["labels"] == [1, 1]
    assert data["validation"].features["labels"] == data["train"].features["labels"]


def test_sentence_pairs_tokenized_as_pairs(tmp_path, tokenizer):
    rows = [(f"good movie {i}", "the plot", i % 2) for i in range(6)]
    path = write_csv(tmp_path / "pairs.tsv", ["text_a", "text_b", "label"], rows, "\t")
    val = write_csv(tmp_path / "pairs_val.tsv", ["text_a", "text_b", "label"], rows[:2], "\t")
    args = DataArguments(
        train_file=path, validation_file=val, text_column="text_a", text_pair_column="text_b"
    )
    data, _ = load_classification_data(args)
    assert data["train"].column_names == ["text_a", "text_b", "labels"]
    tokenized = tokenize_dataset(data, tokenizer, "text_a", "text_b", max_length=args.max_length)
    for split, ds in tokenized.items():
        for row, text_a, text_b in zip(ds, data[split]["text_a"], data[split]["text_b"], strict=True):
            assert set(row["token_type_ids"]) == {0, 1}
            assert row["input_ids"].count(tokenizer.sep_token_id) == 2
            assert row["input_ids"] == tokenizer(text_a, text_b)["input_ids"]


# --------------------------------------------------------------------------- the seeded split


@pytest.mark.parametrize(("n", "fraction", "expected"), [(73, 0.1, 7), (26, 0.2, 5), (40, 0.25, 10)])
def test_split_size_is_rounded_fraction(tmp_path, n, fraction, expected):
    # `datasets` rounds a float test_size up (ceil(7.3) == 8, ceil(5.2) == 6); the held-out share is rounded.
    assert expected == round(fraction * n)
    path = write_csv(tmp_path / "d.csv", ["text", "label"], labelled_rows(n // 2, n - n // 2))
    data, _ = load_classification_data(split_args(path, validation_split=fraction))
    assert len(data["validation"]) == expected
    assert len(data["train"]) == n - expected


def test_split_is_stratified(tmp_path):
    # 95 pos / 5 neg, 20 % held out: a stratified split puts exactly 1 neg in validation every time,
    # an unstratified one has none in about a third of the seeds.
    path = write_csv(tmp_path / "d.csv", ["text", "label"], labelled_rows(95, 5))
    for seed in range(4):
        data, names = load_classification_data(split_args(path, validation_split=0.2, split_seed=seed))
        val_counts = Counter(names[i] for i in data["validation"]["labels"])
        train_counts = Counter(names[i] for i in data["train"]["labels"])
        assert val_counts == {"pos": 19, "neg": 1}, seed
        assert train_counts == {"pos": 76, "neg": 4}, seed


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    rows = labelled_rows(30, 30)
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    a, _ = load_classification_data(split_args(path, split_seed=1))
    b, _ = load_classification_data(split_args(path, split_seed=1))
    c, _ = load_classification_data(split_args(path, split_seed=2))
    assert texts(a["validation"]) == texts(b["validation"])
    assert texts(a["train"]) == texts(b["train"])
    assert set(texts(a["validation"])) != set(texts(c["validation"]))
    assert not set(texts(a["train"])) & set(texts(a["validation"]))
    assert set(texts(a["train"])) | set(texts(a["validation"])) == {t for t, _ in rows}


def test_validation_does_not_depend_on_max_train_samples(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], labelled_rows(25, 25))
    full, _ = load_classification_data(split_args(path, split_seed=3))
    small, _ = load_classification_data(split_args(path, split_seed=3, max_train_samples=10))
    assert texts(small["validation"]) == texts(full["validation"])
    assert len(small["train"]) == 10
    assert set(texts(small["train"])) <= set(texts(full["train"]))
    assert len(set(texts(small["train"]))) == 10


def test_max_train_and_eval_samples(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], labelled_rows(20, 20))
    val = write_csv(
        tmp_path / "val.csv", ["text", "label"], [(f"val {i}", ["neg", "pos"][i % 2]) for i in range(12)]
    )
    data, _ = load_classification_data(
        DataArguments(train_file=train, validation_file=val, max_train_samples=7, max_eval_samples=5)
    )
    assert (len(data["train"]), len(data["validation"])) == (7, 5)
    assert set(texts(data["validation"])) <= {f"val {i}" for i in range(12)}
    # Larger than the data: everything is kept.
    data, _ = load_classification_data(
        DataArguments(train_file=train, validation_file=val, max_train_samples=1000, max_eval_samples=1000)
    )
    assert (len(data["train"]), len(data["validation"])) == (40, 12)


def test_max_train_samples_is_a_seeded_random_subset(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], labelled_rows(20, 20))
    val = write_csv(tmp_path / "val.csv", ["text", "label"], labelled_rows(2, 2))
    in_file_order = [t for t, _ in labelled_rows(20, 20)]

    def subset(seed):
        args = DataArguments(train_file=train, validation_file=val, max_train_samples=10, split_seed=seed)
        return texts(load_classification_data(args)[0]["train"])

    first = subset(0)
    assert first == subset(0)
    assert first != in_file_order[:10]  # not simply the head of the file
    assert set(first) != set(subset(1))
    assert set(first) <= set(in_file_order)


def test_max_eval_samples_on_split_validation(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], labelled_rows(20, 20))
    full, _ = load_classification_data(split_args(path, validation_split=0.25))
    small, _ = load_classification_data(split_args(path, validation_split=0.25, max_eval_samples=4))
    assert len(full["validation"]) == 10
    assert len(small["validation"]) == 4
    assert set(texts(small["validation"])) <= set(texts(full["validation"]))
    assert texts(small["train"]) == texts(full["train"])


# --------------------------------------------------------------------------- tokenization


@pytest.fixture
def small_data(tmp_path):
    rows = [
        ("good", "pos"),
        ("bad movie", "neg"),
        ("the movie was very good", "pos"),
        ("the plot was not good and the actors were bad", "neg"),
    ]
    train = write_csv(
        tmp_path / "train.csv", ["text", "label", "extra"], [(*r, i) for i, r in enumerate(rows)]
    )
    val = write_csv(
        tmp_path / "val.csv", ["text", "label", "extra"], [(*r, i) for i, r in enumerate(rows[:2])]
    )
    data, _ = load_classification_data(DataArguments(train_file=train, validation_file=val))
    return data


def test_tokenize_without_padding(small_data, tokenizer):
    tokenized = tokenize_dataset(small_data["train"], tokenizer, "text")
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert len(set(lengths)) == len(lengths)  # every row keeps its own length
    assert lengths == [len(tokenizer(t)["input_ids"]) for t in small_data["train"]["text"]]
    assert all(tokenizer.pad_token_id not in ids for ids in tokenized["input_ids"])
    assert all(set(mask) == {1} for mask in tokenized["attention_mask"])


def test_tokenize_truncates_at_max_length(small_data, tokenizer):
    long_text = small_data["train"]["text"][3]
    assert len(tokenizer(long_text)["input_ids"]) > 8
    tokenized = tokenize_dataset(small_data["train"], tokenizer, "text", max_length=8)
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert max(lengths) == 8
    assert lengths[3] == 8
    assert tokenized["input_ids"][3][-1] == tokenizer.sep_token_id
    untruncated = tokenize_dataset(small_data["train"], tokenizer, "text", max_length=None)
    assert len(untruncated["input_ids"][3]) > 8


def test_tokenize_keeps_only_labels_and_tokenizer_columns(small_data, tokenizer):
    assert "extra" not in small_data["train"].column_names  # load_classification_data drops it
    with_extra = small_data["train"].add_column("extra", [1, 2, 3, 4])
    expected = {"labels", *tokenizer.model_input_names}
    assert set(tokenize_dataset(with_extra, tokenizer, "text").column_names) == expected
    tokenized = tokenize_dataset(small_data, tokenizer, "text")
    assert isinstance(tokenized, DatasetDict)
    for split, ds in tokenized.items():
        assert set(ds.column_names) == expected
        assert ds["labels"] == small_data[split]["labels"]
        assert isinstance(ds.features["labels"], ClassLabel)


# --------------------------------------------------------------------------- bad input: one clear error each


def test_missing_file(tmp_path):
    missing = tmp_path / "nope" / "train.csv"
    with pytest.raises(MissingInputError, match=rf"train_file not found: .*{re.escape(str(missing))}"):
        load_classification_data(DataArguments(train_file=str(missing)))


def test_missing_validation_file_is_named(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], labelled_rows(2, 2))
    missing = tmp_path / "val.csv"
    with pytest.raises(FileNotFoundError, match=rf"validation_file not found: .*{re.escape(str(missing))}"):
        load_classification_data(DataArguments(train_file=train, validation_file=str(missing)))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_text("text,label\na,pos\n")
    with pytest.raises(ValueError, match=r"extension '\.xlsx'; supported: \.csv, \.json, .*\.tsv, \.txt"):
        load_data_file(str(path))


def test_missing_column_lists_existing_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["sentence", "label"], labelled_rows(2, 2))
    named = rf"\['text'\] not found in the train data \({re.escape(path)}\); it has columns \['sentence', 'label'\]"
    with pytest.raises(UserInputError, match=named):
        load_classification_data(split_args(path))
    with pytest.raises(ValueError, match=r"\['target'\] not found .*\['sentence', 'label'\].*label_column"):
        load_classification_data(split_args(path, text_column="sentence", label_column="target"))


def test_txt_file_has_no_label_column(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("one\ntwo\n")
    with pytest.raises(ValueError, match=r"\['label'\] not found .* has columns \['text'\]"):
        load_classification_data(split_args(str(path)))


@pytest.mark.parametrize(
    ("name", "content"),
    [("d.csv", "text,label\n"), ("d.tsv", "text\tlabel\n"), ("d.csv", ""), ("d.jsonl", ""), ("d.txt", "")],
    ids=["header-only-csv", "header-only-tsv", "empty-csv", "empty-jsonl", "empty-txt"],
)
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserInputError, match=rf"train_file .*{re.escape(name)}.* is empty: it has no rows"):
        load_classification_data(split_args(str(path)))


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_labels_that_differ_only_by_surrounding_whitespace_are_one_class(tmp_path, caplog):
    labels = ["pos", "pos ", " neg", "neg", "pos", "neg\t"]
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": v} for i, v in enumerate(labels)])
    val = write_jsonl(tmp_path / "v.jsonl", [{"text": "x", "label": " pos"}, {"text": "y", "label": "neg"}])
    with caplog.at_level(logging.INFO, logger="hfkit.data.classification"):
        data, names = load_classification_data(DataArguments(train_file=train, validation_file=val))
    assert names == ["neg", "pos"]
    assert data["train"]["labels"] == [1, 1, 0, 0, 1, 0] and data["validation"]["labels"] == [1, 0]
    assert "stripped surrounding whitespace from 3 train label(s)" in caplog.text
    assert "1 validation label(s)" in caplog.text


@pytest.mark.parametrize("class_names", [["neg", "pos"], None])
def test_integral_float_labels_are_class_ids(tmp_path, class_names):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": float(i % 2)} for i in range(6)])
    val = write_jsonl(tmp_path / "v.jsonl", [{"text": "x", "label": 1.0}, {"text": "y", "label": 0.0}])
    data, names = load_classification_data(
        DataArguments(train_file=train, validation_file=val, class_names=class_names)
    )
    assert names == (class_names or ["0", "1"])
    assert data["train"]["labels"] == [0, 1, 0, 1, 0, 1] and data["validation"]["labels"] == [1, 0]


def test_fractional_float_labels_with_class_names_say_what_to_change(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": i * 0.5} for i in range(4)])
    with pytest.raises(
        UserInputError, match=r"labels must be the integers 0\.\.1; .*\[0\.0, 0\.5, 1\.0, 1\.5\]"
    ):
        load_classification_data(DataArguments(train_file=train, class_names=["neg", "pos"]))


def test_validation_label_unseen_in_training(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], labelled_rows(3, 3))
    val = write_csv(tmp_path / "val.csv", ["text", "label"], [("x", "pos"), ("y", "neutral")])
    with pytest.raises(
        ValueError, match=r"validation has label\(s\) \['neutral'\] never seen in training .*\['neg', 'pos'\]"
    ):
        load_classification_data(DataArguments(train_file=train, validation_file=val))


def test_validation_int_label_outside_class_names(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", i % 2) for i in range(6)])
    val = write_csv(tmp_path / "val.csv", ["text", "label"], [("x", 0), ("y", 2)])
    with pytest.raises(
        ValueError, match=r"\['2'\] never seen in training \(training labels: \['neg', 'pos'\]\)"
    ):
        load_classification_data(
            DataArguments(train_file=train, validation_file=val, class_names=["neg", "pos"])
        )


def test_non_string_text_value(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "good", "label": "pos"}, {"text": 5, "label": "neg"}, {"text": "bad", "label": "neg"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"train row 1, column 'text': expected text, got int 5"):
        load_classification_data(split_args(str(path)))


def test_empty_text_value(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\nbad,neg\n,pos\nfine,neg\n")
    with pytest.raises(ValueError, match=r"train row 2, column 'text': expected text, got NoneType None"):
        load_classification_data(split_args(str(path)))


def test_none_in_validation_pair_column(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"a": f"t{i}", "b": "u", "label": i % 2}) + "\n" for i in range(4)))
    val = tmp_path / "val.jsonl"
    val.write_text(
        json.dumps({"a": "x", "b": "y", "label": 0}) + "\n" + json.dumps({"a": "x", "b": None, "label": 1})
    )
    args = DataArguments(
        train_file=str(train), validation_file=str(val), text_column="a", text_pair_column="b"
    )
    with pytest.raises(ValueError, match=r"validation row 1, column 'b': expected text"):
        load_classification_data(args)


def test_single_class_in_training(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], [(f"t{i}", "pos") for i in range(5)])
    with pytest.raises(ValueError, match=r"single class \['pos'\]; classification needs at least two"):
        load_classification_data(split_args(path))


@pytest.mark.parametrize(
    ("labels", "shown"),
    [([0, 1, 2], r"\[0, 1, 2\]"), ([1, 2], r"\[1, 2\]"), (["neg", "pos"], r"\['neg', 'pos'\]")],
    ids=["too-many-labels", "not-from-zero", "string-labels"],
)
def test_class_names_inconsistent_with_labels(tmp_path, labels, shown):
    rows = [(f"t{i}", labels[i % len(labels)]) for i in range(6)]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(
        ValueError, match=rf"class_names gives 2 names, so labels must be the integers 0\.\.1; .*{shown}"
    ):
        load_classification_data(split_args(path, class_names=["neg", "pos"]))


def test_data_arguments_need_a_source():
    with pytest.raises(ValueError, match=r"No data given: set train_file .* or dataset_name"):
        DataArguments()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_validation_split_out_of_range(fraction):
    with pytest.raises(
        ValueError, match=rf"validation_split must be in \(0, 1\), got {re.escape(str(fraction))}"
    ):
        DataArguments(train_file="x.csv", validation_split=fraction)


@pytest.mark.parametrize("name", ["max_train_samples", "max_eval_samples", "max_length"])
def test_non_positive_sizes(name):
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer or None, got 0"):
        DataArguments(train_file="x.csv", **{name: 0})


def test_too_few_rows_to_split(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], labelled_rows(2, 2))
    with pytest.raises(ValueError, match=r"cannot hold out validation_split=0\.1 \(0 of 4 .*validation_file"):
        load_classification_data(split_args(path))
