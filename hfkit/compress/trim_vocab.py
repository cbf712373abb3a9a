"""Vocabulary trimming: keep only the token ids a task's text produces, in the embeddings and the tokenizer.

A small student spends most of its parameters on the embedding table (the 3-layer MiniLM: 11.7M of 17.4M
for 30,522 x 384), yet a task's text uses a few thousand token ids. `trim_vocabulary` keeps the ids a corpus
produces plus every special and added token, renumbers them in their old order (so [PAD] stays 0 when it was
0), slices the input embeddings (and an output/LM head, tied or not, with its bias), updates the config's
`vocab_size` and special-token ids, and rewrites the fast tokenizer's `tokenizer.json` to the new ids.

Covered text gives the same logits as before: WordPiece splits a word greedily into the longest piece in the
vocabulary, so when every piece of the original split is kept, each piece is still the longest kept match
and the split (hence the ids, renumbered) is unchanged.

Fallback for text outside the kept set: a word whose original pieces are not all kept is split again with
the kept pieces (WordPiece's usual rule); when no split exists the whole word becomes [UNK], as for any word
a WordPiece vocabulary cannot spell. With `keep_characters` (the default) every character of the corpus is
kept as a word-initial and a continuation piece ("q" and "##q"), so any word made of the corpus's characters
can still be spelled, down to single characters, instead of becoming [UNK]: this matters when
`min_frequency` drops rare tokens, and a `recover` stage then teaches the model the new splits.
`oov_rates` measures how often a text set hits the fallback (rows and tokens).

Supported: fast tokenizers with a WordPiece model (BERT, MiniLM, MPNet, DistilBERT, ELECTRA ...). BPE and
Unigram (SentencePiece) vocabularies are not trimmed: their merges/pieces need a closure over intermediate
tokens and byte fallbacks; they raise a UserInputError naming the tokenizer.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from ..errors import UserInputError

logger = logging.getLogger(__name__)

__all__ = [
    "TrimVocabArguments",
    "TrimResult",
    "corpus_token_counts",
    "kept_token_ids",
    "character_token_ids",
    "oov_rates",
    "trim_tokenizer_json",
    "trim_vocabulary",
    "save_trimmed",
]

# The corpora the kept vocabulary may come from, and the splits each reads. Only the training text is a fair
# default: a vocabulary built from the validation text covers exactly the sentences it is then scored on, so
# its "no loss" holds by construction; that corpus is kept as a named oracle for analysis (how much of the
# trimming cost is unseen words), never for a model that ships.
ORACLE_CORPUS = "oracle:train+validation"
CORPUS_SPLITS = {"train": ("train",), ORACLE_CORPUS: ("train", "validation")}
# Config fields that hold a token id and must follow the renumbering.
_TOKEN_ID_FIELDS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "unk_token_id",
    "mask_token_id",
    "decoder_start_token_id",
)


@dataclass
class TrimVocabArguments:
    """Which text decides the kept vocabulary."""

    trim_corpus: str = field(
        default="train",
        metadata={
            "help": "Text whose token ids are kept: 'train' (validation then measures the fallback on text the "
            f"trimming never saw, as a deployed model meets it) or '{ORACLE_CORPUS}' (an analysis oracle: the "
            "validation text is covered exactly, so the validation score flatters; never for a shipped model)."
        },
    )
    trim_min_frequency: int = field(
        default=1,
        metadata={"help": "Keep a token only if the corpus produces it at least this many times."},
    )
    trim_keep_characters: bool = field(
        default=True,
        metadata={
            "help": "Also keep every character of the corpus as a piece ('q' and '##q'), so a word whose "
            "tokens were dropped is spelled with smaller kept pieces instead of becoming [UNK]."
        },
    )

    def __post_init__(self):
        if self.trim_corpus == "train+validation":  # the pre-0.2 default, renamed to say what it is
            raise UserInputError(
                f"trim_corpus='train+validation' builds the vocabulary from the text the model is then scored on; "
                f"use 'train' (the default), or '{ORACLE_CORPUS}' to measure that oracle on purpose."
            )
        if self.trim_corpus not in CORPUS_SPLITS:
            raise UserInputError(f"trim_corpus={self.trim_corpus!r}: use one of {list(CORPUS_SPLITS)}.")
        value = self.trim_min_frequency
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"trim_min_frequency={value!r}: give an integer >= 1.")


@dataclass
class TrimResult:
    """What trimming kept: old ids in new order, and the vocabulary sizes before and after."""

    kept_ids: list[int]
    original_vocab_size: int

    @property
    def vocab_size(self) -> int:
        return len(self.kept_ids)

    def old_to_new(self) -> dict[int, int]:
        """Map from an old token id to its new id (kept ids only)."""
        return {old: new for new, old in enumerate(self.kept_ids)}


def _backend_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserInputError(
            f"{type(tokenizer).__name__} is a slow (Python) tokenizer: vocabulary trimming rewrites a fast "
            "tokenizer's tokenizer.json. Load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    state = json.loads(backend.to_str())
    kind = state["model"]["type"]
    if kind != "WordPiece":
        raise UserInputError(
            f"{type(tokenizer).__name__} uses a {kind} vocabulary; vocabulary trimming supports WordPiece "
            "tokenizers (BERT, MiniLM, MPNet, DistilBERT ...) only. Skip the trim_vocab stage for this model."
        )
    return state


def corpus_token_counts(tokenizer, texts: Iterable[str], batch_size: int = 1000) -> Counter:
    """How often the tokenizer produces each token id over `texts` (no special tokens, no truncation)."""
    counts: Counter = Counter()
    batch: list[str] = []

    def flush():
        if batch:
            for ids in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
                counts.update(ids)
            batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    return counts


def kept_token_ids(
    tokenizer, texts: Iterable[str], min_frequency: int = 1, keep_characters: bool = True
) -> list[int]:
    """Sorted ids to keep: every id the texts produce (at least min_frequency times) plus all added/special ids.

    With keep_characters, also the single-character pieces of every character in the (normalized) texts.
    """
    texts = list(texts)
    counts = corpus_token_counts(tokenizer, texts)
    if not counts:
        raise UserInputError("the corpus for vocabulary trimming is empty: give training text.")
    keep = {i for i, n in counts.items() if n >= min_frequency}
    keep |= set(tokenizer.all_special_ids)
    keep |= set(tokenizer.added_tokens_decoder)  # added tokens are matched before the model: keep them all
    if keep_characters:
        keep |= character_token_ids(tokenizer, texts)
    return sorted(keep)


def character_token_ids(tokenizer, texts: Iterable[str]) -> set[int]:
    """Ids of the one-character pieces ('q', '##q') for every character the texts hold after normalization."""
    state = _backend_json(tokenizer)
    prefix = state["model"].get("continuing_subword_prefix") or "##"
    normalizer = tokenizer.backend_tokenizer.normalizer
    characters: set[str] = set()
    for text in texts:
        characters.update(normalizer.normalize_str(text) if normalizer is not None else text)
    vocab = tokenizer.get_vocab()
    pieces = (piece for c in characters if not c.isspace() for piece in (c, prefix + c))
    return {vocab[piece] for piece in pieces if piece in vocab}


def trim_tokenizer_json(state: dict, result: TrimResult) -> dict:
    """A WordPiece tokenizer.json state with only the kept tokens, renumbered; special-token ids remapped."""
    new_id = result.old_to_new()
    state = json.loads(json.dumps(state))  # deep copy
    vocab = state["model"]["vocab"]
    by_id = {i: token for token, i in vocab.items()}
    state["model"]["vocab"] = {by_id[old]: new for new, old in enumerate(result.kept_ids)}
    if state["model"].get("unk_token") not in state["model"]["vocab"]:
        raise UserInputError(
            f"the tokenizer's unk token {state['model'].get('unk_token')!r} is not in its vocabulary, so "
            "trimmed text could not fall back to it; add it as a special token first."
        )
    for added in state.get("added_tokens") or []:
        added["id"] = new_id[added["id"]]
    post = state.get("post_processor")
    for processor in [post, *((post or {}).get("processors") or [])]:
        for special in ((processor or {}).get("special_tokens") or {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
        for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing store [token, id]
            if processor and isinstance(processor.get(key), list):
                processor[key][1] = new_id[processor[key][1]]
    if state.get("padding"):
        state["padding"]["pad_id"] = new_id[state["padding"]["pad_id"]]
    return state


def _slice_embedding(old: nn.Embedding, ids: torch.Tensor, padding_idx: int | None) -> nn.Embedding:
    new = nn.Embedding(len(ids), old.embedding_dim, padding_idx=padding_idx, dtype=old.weight.dtype)
    new.to(old.weight.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[ids])
    return new


def trim_vocabulary(
    model: PreTrainedModel,
    tokenizer,
    texts: Iterable[str],
    min_frequency: int = 1,
    keep_characters: bool = True,
):
    """Trim `model` (in place) and `tokenizer` to the ids `texts` produce; return (model, tokenizer, TrimResult).

    The returned tokenizer is a new fast tokenizer of the same class built from the rewritten tokenizer.json.
    `keep_characters` also keeps the corpus's one-character pieces (the fallback for dropped tokens).
    """
    state = _backend_json(tokenizer)
    kept = kept_token_ids(tokenizer, texts, min_frequency, keep_characters)
    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, nn.Embedding):
        raise UserInputError(
            f"the input embeddings are a {type(embeddings).__name__}, not an nn.Embedding table (factorized?): "
            "trim the vocabulary first, then factorize, e.g. 'trim_vocab>lowrank:embedding_rank=256'."
        )
    if embeddings.num_embeddings < len(tokenizer):
        raise UserInputError(
            f"the model has {embeddings.num_embeddings} embeddings but the tokenizer {len(tokenizer)} tokens: "
            "give the tokenizer the model was trained with."
        )
    result = TrimResult(kept_ids=kept, original_vocab_size=embeddings.num_embeddings)
    new_id = result.old_to_new()
    ids = torch.tensor(kept, dtype=torch.long, device=embeddings.weight.device)

    old_padding = embeddings.padding_idx
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embeddings.weight
    model.set_input_embeddings(_slice_embedding(embeddings, ids, new_id.get(old_padding)))
    if output is not None:
        # An LM head scores every vocabulary entry: keep the same rows (and bias entries) as the embeddings.
        if tied:
            output.weight = model.get_input_embeddings().weight
        else:
            output.weight = nn.Parameter(output.weight.detach()[ids].clone())
        if getattr(output, "bias", None) is not None:
            output.bias = nn.Parameter(output.bias.detach()[ids].clone())
        output.out_features = len(kept)
    for config in {id(c): c for c in (model.config, getattr(model.config, "get_text_config", lambda: None)())
                   if c is not None}.values():  # fmt: skip
        if getattr(config, "vocab_size", None) is not None:
            config.vocab_size = len(kept)
        for name in _TOKEN_ID_FIELDS:
            old = getattr(config, name, None)
            if isinstance(old, int) and old in new_id:
                setattr(config, name, new_id[old])
    if hasattr(model, "tie_weights"):
        model.tie_weights()

    new_state = trim_tokenizer_json(state, result)
    new_tokenizer = _rebuild_tokenizer(tokenizer, new_state)
    logger.info("trimmed the vocabulary from %d to %d tokens.", result.original_vocab_size, result.vocab_size)
    return model, new_tokenizer, result


def _rebuild_tokenizer(tokenizer, state: dict):
    # Save the original (config, special tokens) and swap in the rewritten tokenizer.json: the reloaded
    # tokenizer then has exactly the class and settings of the original, and the new ids.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        _write_tokenizer_json(tmp, state)
        return AutoTokenizer.from_pretrained(tmp)


def _write_tokenizer_json(folder: str, state: dict) -> None:
    Tokenizer.from_str(json.dumps(state))  # fails here, not at load time, if the state is inconsistent
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(state, f, ensure_ascii=False)
    vocab_txt = os.path.join(folder, "vocab.txt")
    if os.path.exists(vocab_txt):  # a slow-tokenizer copy of the vocabulary must not contradict the new ids
        vocab = state["model"]["vocab"]
        with open(vocab_txt, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in sorted(vocab, key=vocab.get))


def save_trimmed(model: PreTrainedModel, tokenizer, folder: str | os.PathLike) -> None:
    """Save a trimmed model and tokenizer (safetensors) so the Auto classes reload them."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def oov_rates(tokenizer, kept_ids: Sequence[int], texts: Sequence[str]) -> dict[str, float]:
    """Share of `texts` (rows) and of their tokens that the original tokenizer maps outside the kept ids."""
    kept = set(kept_ids)
    rows = tokens = outside_rows = outside_tokens = 0
    for start in range(0, len(texts), 1000):
        encoded = tokenizer(list(texts[start : start + 1000]), add_special_tokens=False, truncation=False)
        for ids in encoded["input_ids"]:
            missing = sum(1 for i in ids if i not in kept)
            rows += 1
            tokens += len(ids)
            outside_rows += missing > 0
            outside_tokens += missing
    return {
        "oov_row_fraction": outside_rows / rows if rows else 0.0,
        "oov_token_fraction": outside_tokens / tokens if tokens else 0.0,
        "oov_rows": outside_rows,
        "oov_tokens": outside_tokens,
    }
