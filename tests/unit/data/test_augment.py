"""Unit tests for hfkit.data.augment: word-level augmentations and seeded dataset augmentation."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Value

from hfkit.data.augment import (
    AUGMENTED_COLUMN,
    IGNORE_INDEX,
    AugmentArguments,
    augment_dataset,
    load_word_vectors,
    nearest_neighbours,
    replace_mask_token,
    word_dropout,
    word_mask,
    word_replace,
    word_swap,
)
from hfkit.errors import UserInputError

LONG = " ".join(f"w{i}" for i in range(2000))
SENTENCES = [
    "the movie was a delight from start to finish",
    "dull plot and wooden acting throughout",
    "an okay film with a few good scenes",
    "i would not watch it again",
    "brilliant",
]
LABELS = [1, 0, 1, 0, 1]


def make_ds(class_label: bool = False) -> Dataset:
    ds = Dataset.from_dict({"text": SENTENCES, "labels": LABELS, "id": list(range(len(SENTENCES)))})
    return ds.cast_column("labels", ClassLabel(names=["neg", "pos"])) if class_label else ds


# ---------------------------------------------------------------------------------------------------
# word-level functions
# ---------------------------------------------------------------------------------------------------


def test_dropout_p0_is_identity_and_p_near_1_keeps_a_word():
    rng = random.Random(0)
    assert word_dropout(SENTENCES[0], rng, p=0.0) == SENTENCES[0]
    for _ in range(50):
        out = word_dropout(SENTENCES[0], rng, p=0.999)
        assert len(out.split()) >= 1 and set(out.split()) <= set(SENTENCES[0].split())
    assert word_dropout("", rng, p=0.5) == ""


def test_dropout_rate_and_word_order():
    out = word_dropout(LONG, random.Random(1), p=0.3).split()
    assert 0.25 < 1 - len(out) / 2000 < 0.35
    assert out == sorted(out, key=lambda w: int(w[1:]))  # survivors keep their order


def test_mask_count_is_roughly_p_times_n():
    out = word_mask(LONG, random.Random(2), p=0.2, mask_token="<mask>").split()
    assert len(out) == 2000
    masked = [i for i, w in enumerate(out) if w == "<mask>"]
    assert 0.16 < len(masked) / 2000 < 0.24
    assert all(w == f"w{i}" for i, w in enumerate(out) if w != "<mask>")  # others untouched
    assert word_mask(SENTENCES[0], random.Random(0), p=0.0) == SENTENCES[0]


def test_swap_preserves_words_and_changes_order():
    words = SENTENCES[2].split()
    distinct = "one two three four five six"
    rng = random.Random(3)
    for _ in range(20):
        out = word_swap(distinct, rng, n_swaps=1)
        assert Counter(out.split()) == Counter(distinct.split()) and out != distinct
        # Exactly one adjacent pair differs.
        diff = [i for i, (a, b) in enumerate(zip(out.split(), distinct.split(), strict=True)) if a != b]
        assert len(diff) == 2 and diff[1] == diff[0] + 1
    assert Counter(word_swap(SENTENCES[2], rng, n_swaps=5).split()) == Counter(words)
    assert word_swap("alone", rng) == "alone" and word_swap(distinct, rng, n_swaps=0) == distinct


def test_functions_reject_bad_arguments():
    rng = random.Random(0)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            word_dropout("a b", rng, p=bad)
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            word_mask("a b", rng, p=bad)
    with pytest.raises(ValueError, match="n_swaps"):
        word_swap("a b", rng, n_swaps=-1)


# ---------------------------------------------------------------------------------------------------
# augment_dataset
# ---------------------------------------------------------------------------------------------------


def test_sizes_labels_and_originals_untouched():
    ds = make_ds()
    out = augment_dataset(ds, "text", copies=3, seed=0, p=0.3)
    n = len(ds)
    assert len(out) == n * (1 + 3)
    assert out[AUGMENTED_COLUMN] == [0] * n + [1] * (3 * n)
    assert out["text"][:n] == SENTENCES and out["labels"][:n] == LABELS
    assert out["labels"][n:] == [IGNORE_INDEX] * (3 * n)
    assert out["id"] == list(range(n)) * 4  # other columns are carried along unchanged
    assert out["text"][n:] != SENTENCES * 3  # something was actually augmented
    assert out.features["labels"] == Value("int64") and out.features[AUGMENTED_COLUMN].dtype.startswith("int")


def test_same_seed_same_dataset_other_seed_differs():
    ds = make_ds()
    a = augment_dataset(ds, "text", copies=2, seed=7, p=0.3)
    random.seed(123)  # global RNG state must not matter
    b = augment_dataset(ds, "text", copies=2, seed=7, p=0.3)
    c = augment_dataset(ds, "text", copies=2, seed=8, p=0.3)
    assert a.to_dict() == b.to_dict()
    assert a._fingerprint == b._fingerprint  # deterministic: downstream caches hit again
    assert list(a["text"]) != list(c["text"]) and a._fingerprint != c._fingerprint


def test_augment_does_not_consume_global_random_state():
    random.seed(5)
    expected = random.random()
    random.seed(5)
    augment_dataset(make_ds(), "text", copies=1)
    assert random.random() == expected


def test_classlabel_input_is_cast_to_int():
    ds = make_ds(class_label=True)
    out = augment_dataset(ds, "text", copies=1, methods=("mask",), p=0.5, mask_token="[MASK]")
    assert out.features["labels"] == Value("int64")
    assert out["labels"] == LABELS + [IGNORE_INDEX] * len(LABELS)
    assert any("[MASK]" in t for t in out["text"][len(ds) :])
    assert isinstance(ds.features["labels"], ClassLabel)  # input left as is


def test_single_method_and_text_pairs():
    ds = Dataset.from_dict(
        {"premise": ["a b c d", "e f g h"], "hypothesis": ["i j k l", "m n o p"], "labels": [0, 2]}
    )
    out = augment_dataset(ds, "premise", copies=2, methods=["swap"], text_pair_column="hypothesis")
    for column in ("premise", "hypothesis"):
        originals = list(ds[column]) * 2
        for orig, new in zip(originals, out[column][2:], strict=True):
            assert sorted(new.split()) == sorted(orig.split()) and new != orig


def test_replace_mask_token_gives_a_teacher_its_own_mask_on_augmented_rows_only():
    ds = Dataset.from_dict({"text": ["keep [MASK] here", *SENTENCES], "labels": [0, *LABELS]})
    out = augment_dataset(ds, "text", copies=1, methods=["mask"], p=0.5, seed=3)
    teacher_view = replace_mask_token(out, ["text"], "[MASK]", "<mask>")
    assert teacher_view[0]["text"] == "keep [MASK] here"  # an original row: its text is data, not a mask
    masked = 0
    for student_text, teacher_text in zip(
        out["text"][len(ds) :], teacher_view["text"][len(ds) :], strict=True
    ):
        student_words, teacher_words = student_text.split(), teacher_text.split()
        assert len(student_words) == len(teacher_words)
        for s_word, t_word in zip(student_words, teacher_words, strict=True):
            assert t_word == ("<mask>" if s_word == "[MASK]" else s_word)
            masked += s_word == "[MASK]"
    assert masked >= 3  # p = 0.5 over 40 words: the test exercises real replacements
    assert replace_mask_token(out, ["text"], "[MASK]", "[MASK]") is out
    assert replace_mask_token(ds, ["text"], "[MASK]", "<mask>") is ds  # not augmented: nothing to do


def test_copies_zero_returns_dataset_unchanged():
    ds = make_ds(class_label=True)
    assert augment_dataset(ds, "text", copies=0) is ds


def test_unlabelled_data_with_label_column_none():
    ds = Dataset.from_dict({"text": SENTENCES})
    out = augment_dataset(ds, "text", copies=1, label_column=None)
    assert out.column_names == ["text", AUGMENTED_COLUMN] and len(out) == 2 * len(ds)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"copies": -1}, ValueError, "copies"),
        ({"copies": 1.5}, ValueError, "copies"),
        ({"methods": ("dropout", "shuffle")}, ValueError, r"unknown augmentation method.*shuffle"),
        ({"methods": ()}, ValueError, "methods is empty"),
        ({"methods": "swap"}, TypeError, "sequence of names"),
        ({"p": 1.0}, ValueError, r"p must be in \[0, 1\)"),
        ({"p": -0.2}, ValueError, r"p must be in \[0, 1\)"),
        ({"text_column": "sentence"}, ValueError, r"\['sentence'\] not found"),
        ({"label_column": "label"}, ValueError, r"\['label'\] not found"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    args = {"text_column": "text", "copies": 1, **kwargs}
    with pytest.raises(error, match=match):
        augment_dataset(make_ds(), **args)


def test_tokenized_or_string_labelled_data_is_rejected():
    tokenized = make_ds().add_column("input_ids", [[1, 2]] * len(SENTENCES))
    with pytest.raises(ValueError, match="before tokenizing"):
        augment_dataset(tokenized, "text", copies=1)
    strings = Dataset.from_dict({"text": SENTENCES, "labels": ["pos"] * len(SENTENCES)})
    with pytest.raises(ValueError, match="integer class ids"):
        augment_dataset(strings, "text", copies=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"augment_copies": -1}, "augment_copies must be >= 0"),
        ({"augment_methods": ["dropout", "shuffle"]}, r"choose one or more of \('dropout'"),
        ({"augment_methods": []}, "choose one or more of"),
        ({"augment_p": 1.0}, r"augment_p must be in \[0, 1\), got 1.0"),
    ],
)
def test_augment_arguments_are_checked_as_user_input(kwargs, message):
    with pytest.raises(UserInputError, match=message):
        AugmentArguments(**kwargs)


# ---- neighbour replacement (TinyBERT) ----------------------------------------------------------------------

# Four directions: 'awful' sits next to 'terrible' and 'horrible'; 'great' next to 'good'; ',' would be nearest
# to 'terrible' if punctuation were a candidate.
VECTOR_WORDS = ["terrible", ",", "good", "horrible", "awful", "great", "film", "42"]
VECTORS = np.array(
    [[1.0, 0.0, 0.0], [1.0, 0.01, 0.0], [0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.95, 0.05, 0.0], [0.1, 0.9, 0.0],
     [0.2, 0.5, 1.0], [0.0, 0.1, 0.9]]
)  # fmt: skip


def test_nearest_neighbours_by_cosine_without_the_word_itself_or_punctuation():
    table = nearest_neighbours(
        ["Terrible", "good", "film", ",", "unknown"], VECTOR_WORDS, VECTORS, candidates=2
    )
    assert table == {
        "terrible": ["awful", "horrible"],
        "good": ["great", "film"],
        "film": ["great", "good"],
    }
    # Only the `vocabulary_limit` most frequent words (the first rows) are candidates.
    assert nearest_neighbours(["terrible"], VECTOR_WORDS, VECTORS, 1, vocabulary_limit=4) == {
        "terrible": ["horrible"]
    }
    with pytest.raises(UserInputError, match="8 words but 2 vectors"):
        nearest_neighbours(["good"], VECTOR_WORDS, VECTORS[:2])


def test_word_replace_uses_only_listed_neighbours():
    table = {"terrible": ["awful", "horrible"], "film": ["movie"]}
    rng = random.Random(0)
    out = [word_replace("a Terrible film , truly", rng, table, p=0.99).split() for _ in range(50)]
    assert {o[1] for o in out} == {"awful", "horrible"} and {o[2] for o in out} == {"movie"}
    assert all(o[0] == "a" and o[3:] == [",", "truly"] for o in out)  # words without neighbours are kept
    assert word_replace("a terrible film", random.Random(0), table, p=0.0) == "a terrible film"


def test_neighbour_copies_are_seeded_and_keyed_by_their_table():
    data = Dataset.from_dict({"text": ["a terrible film", "a good film"], "labels": [0, 1]})
    table = {"terrible": ["awful"], "good": ["great"], "film": ["movie"]}
    out = augment_dataset(
        data, "text", copies=3, methods=["neighbour"], seed=1, neighbours=table, neighbour_p=0.5
    )
    assert out["labels"][2:] == [IGNORE_INDEX] * 6
    for text in out["text"][2:]:
        assert set(text.split()) <= {"a", "terrible", "awful", "good", "great", "film", "movie"}
    assert out["text"][2:] != ["a terrible film", "a good film"] * 3  # something was replaced
    again = augment_dataset(
        data, "text", copies=3, methods=["neighbour"], seed=1, neighbours=table, neighbour_p=0.5
    )
    assert again["text"] == out["text"] and again._fingerprint == out._fingerprint
    other = augment_dataset(data, "text", copies=3, methods=["neighbour"], seed=1, neighbours={**table, "a": ["the"]},
                            neighbour_p=0.5)  # fmt: skip
    assert other._fingerprint != out._fingerprint  # a cache keyed on it cannot mix the two
    with pytest.raises(ValueError, match="the neighbour method needs a word -> neighbours table"):
        augment_dataset(data, "text", copies=1, methods=["neighbour"])


def test_augment_arguments_build_the_table_from_a_vectors_folder(tmp_path):
    (tmp_path / "words.txt").write_text("\n".join(VECTOR_WORDS) + "\n")
    np.save(tmp_path / "vectors.npy", VECTORS)
    args = AugmentArguments(augment_copies=2, augment_methods=["neighbour"], augment_neighbour_candidates=1,
                            augment_word_vectors=str(tmp_path))  # fmt: skip
    assert args.neighbours(["a terrible film"]) == {"terrible": ["awful"], "film": ["great"]}
    assert AugmentArguments(augment_copies=2).neighbours(["a terrible film"]) is None  # not asked for
    assert AugmentArguments().augment_methods == ["dropout", "swap", "mask"]
    with pytest.raises(UserInputError, match="expected a folder with words.txt and vectors.npy"):
        AugmentArguments(augment_copies=1, augment_methods=["neighbour"],
                         augment_word_vectors=str(tmp_path / "none")).neighbours(["x"])  # fmt: skip
    words, vectors = load_word_vectors(str(tmp_path))
    assert words == VECTOR_WORDS and vectors.shape == (8, 3)
