"""Causal-LM data: plain text packed into blocks, prompt/response pairs and chat messages, with labels.

Every split ends up with ``input_ids``, ``attention_mask`` and ``labels`` (unpadded lists; `LMDataCollator`
pads each batch). ``labels`` equal ``input_ids`` except on tokens that must not be learned (prompts, chat
turns other than the assistant's, padding), which are ``-100``. Labels are NOT shifted here: the model (or
`CLMTrainer`) predicts ``labels[t + 1]`` from position ``t``, so the first token of a row is never a target
and nothing leaks from one row (or block) into the next.

Three formats, picked by ``data_format`` (``auto`` looks at the columns):

* ``text``: documents (a ``.txt`` file read whole, by paragraph or by line; or a text column). With packing,
  documents are tokenized, concatenated with EOS after each one and cut into full ``block_size`` windows,
  as transformers' ``run_clm.py`` ``group_texts`` does (the tail that does not fill a block is dropped).
  Without packing each document is cut into windows of at most ``block_size`` tokens on its own.
* ``prompt_response``: a prompt column and a response column (csv/jsonl/...). The response is tokenized
  separately, followed by EOS, and appended to the prompt; with ``completion_only_loss`` the prompt tokens
  get label -100.
* ``messages``: a column of chat conversations (``[{"role": ..., "content": ...}, ...]``) rendered with the
  tokenizer's chat template; with ``completion_only_loss`` only the assistant turns are learned.

Without a validation file a seeded share of the examples (blocks, when packed) is held out.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset, DatasetDict

from ..errors import UserInputError
from .sources import DataSourceArguments, load_raw_datasets, row_lengths, split_source, subsample

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_FORMATS",
    "TOPK_INDICES",
    "TOPK_VALUES",
    "LMDataArguments",
    "LMDataCollator",
    "build_lm_dataset",
    "detect_format",
    "group_texts",
    "load_lm_data",
    "lm_pad_token_id",
    "split_lm_dataset",
]

IGNORE_INDEX = -100
DATA_FORMATS = ("auto", "text", "prompt_response", "messages")
SAMPLE_BY = ("document", "paragraph", "line")
# Per-token teacher top-k columns (see hfkit.teacher_cache.lm); the collator pads them along the sequence.
TOPK_VALUES = "teacher_topk_values"
TOPK_INDICES = "teacher_topk_indices"


@dataclass
class LMDataArguments(DataSourceArguments):
    """Causal-LM data: where it comes from (DataSourceArguments), its format and the columns that hold it."""

    data_format: str = field(
        default="auto",
        metadata={
            "help": "'text' (documents), 'prompt_response' (two columns), 'messages' (chat, uses the chat "
            "template) or 'auto': messages_column if present, else prompt+response columns, else text_column.",
            "choices": list(DATA_FORMATS),
        },
    )
    text_column: str = field(
        default="text", metadata={"help": "Column of documents ('text' for .txt files)."}
    )
    prompt_column: str = field(default="prompt", metadata={"help": "Column of prompts (prompt_response)."})
    response_column: str = field(
        default="response", metadata={"help": "Column of responses (prompt_response)."}
    )
    messages_column: str = field(
        default="messages", metadata={"help": "Column of chat conversations (messages)."}
    )
    text_sample_by: str = field(
        default="document",
        metadata={
            "help": "How a .txt file splits into documents (EOS goes after each): 'document' (the whole file), "
            "'paragraph' (blank-line separated) or 'line'.",
            "choices": list(SAMPLE_BY),
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.data_format not in DATA_FORMATS:
            raise UserInputError(f"data_format must be one of {DATA_FORMATS}, got {self.data_format!r}.")
        if self.text_sample_by not in SAMPLE_BY:
            raise UserInputError(f"text_sample_by must be one of {SAMPLE_BY}, got {self.text_sample_by!r}.")


def detect_format(columns: list[str], args: LMDataArguments, where: str = "the data") -> str:
    """The data format to use for a dataset with these columns ('text', 'prompt_response' or 'messages')."""
    needs = {
        "messages": [args.messages_column],
        "prompt_response": [args.prompt_column, args.response_column],
        "text": [args.text_column],
    }
    if args.data_format != "auto":
        missing = [c for c in needs[args.data_format] if c not in columns]
        if missing:
            raise UserInputError(
                f"data_format={args.data_format!r} needs column(s) {missing}, but {where} has columns {columns}. "
                "Set text_column / prompt_column / response_column / messages_column to one of those."
            )
        return args.data_format
    for name in ("messages", "prompt_response", "text"):
        if all(c in columns for c in needs[name]):
            return name
    raise UserInputError(
        f"cannot tell the data format from columns {columns} of {where}: expected a {args.messages_column!r} column "
        f"(chat), {args.prompt_column!r} + {args.response_column!r} columns, or a {args.text_column!r} column. "
        "Set messages_column / prompt_column+response_column / text_column (and data_format) to match."
    )


# ---- tokenization ----------------------------------------------------------------------------------------


def _eos_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise UserInputError(
            f"tokenizer {type(tokenizer).__name__} has no eos_token, which separates documents and ends responses: "
            "set one, e.g. tokenizer.eos_token = '</s>' (a token of its vocabulary)."
        )
    return eos


def _check_strings(values: list, split: str, column: str, start: int) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise UserInputError(
                f"{split} row {start + i}, column {column!r}: expected text, got {type(value).__name__} {value!r}. "
                "Fill or drop empty rows, or choose the right column."
            )


def _tokenize_documents(batch, indices, *, tokenizer, column, split) -> dict[str, list]:
    texts = batch[column]
    _check_strings(texts, split, column, indices[0] if indices else 0)
    eos = _eos_id(tokenizer)
    ids = tokenizer(texts)["input_ids"]
    # EOS after every document (unless the tokenizer already ends them with it) marks where one text stops,
    # so a packed block never reads as one continuous document.
    return {"input_ids": [x if x and x[-1] == eos else [*x, eos] for x in ids]}


def _tokenize_prompt_response(
    batch, indices, *, tokenizer, prompt_column, response_column, completion_only_loss, split
) -> dict[str, list]:
    start = indices[0] if indices else 0
    _check_strings(batch[prompt_column], split, prompt_column, start)
    _check_strings(batch[response_column], split, response_column, start)
    eos = _eos_id(tokenizer)
    prompts = tokenizer(batch[prompt_column])["input_ids"]
    # The response separately and without special tokens: its first token never merges with the prompt's
    # last one, so the prompt/response boundary is exact (TRL's SFTTrainer tokenizes the two parts apart too).
    responses = tokenizer(batch[response_column], add_special_tokens=False)["input_ids"]
    out = {"input_ids": [], "labels": []}
    for prompt, response in zip(prompts, responses):
        response = [*response, eos]
        out["input_ids"].append(prompt + response)
        prompt_labels = [IGNORE_INDEX] * len(prompt) if completion_only_loss else prompt
        out["labels"].append(prompt_labels + response)
    return out


_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


def _marks_assistant_tokens(tokenizer: Any) -> bool:
    """True when the chat template wraps assistant text in {% generation %} blocks, so transformers itself can
    return the assistant-token mask (`apply_chat_template(..., return_assistant_tokens_mask=True)`)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and bool(_GENERATION_TAG.search(template))


def _assistant_spans(tokenizer: Any, messages: list[dict], text: str, row: int) -> list[tuple[int, int]]:
    """Character spans of `text` (the rendered conversation) written by the assistant turns."""
    spans = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(upto) and len(upto) >= len(before)):
            raise UserInputError(
                f"row {row}: the chat template renders a conversation differently from its beginning (e.g. it "
                "rewrites earlier turns), so the assistant's tokens cannot be located. Use prompt/response "
                "columns instead, or set completion_only_loss=false to learn every token."
            )
        spans.append((len(before), len(upto)))
    return spans


def _tokenize_messages(batch, indices, *, tokenizer, column, completion_only_loss, split) -> dict[str, list]:
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserInputError(
            f"the {column!r} column holds chat conversations but tokenizer {type(tokenizer).__name__} has no "
            "chat_template: use a tokenizer that has one, or give prompt/response columns instead."
        )
    out = {"input_ids": [], "labels": []}
    for offset, messages in enumerate(batch[column]):
        row = (indices[0] if indices else 0) + offset
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise UserInputError(
                f"{split} row {row}, column {column!r}: expected a list of {{'role': ..., 'content': ...}} messages, "
                f"got {messages!r}."
            )
        if completion_only_loss and _marks_assistant_tokens(tokenizer):
            # The template marks the assistant's text: transformers' own mask says which tokens it wrote.
            encoded = tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
            )
            ids = list(encoded["input_ids"])
            labels = [t if m else IGNORE_INDEX for t, m in zip(ids, encoded["assistant_masks"], strict=True)]
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            continue
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        # The template writes the special tokens itself; offsets map every token back to the characters
        # (templates without {% generation %} blocks: the assistant's spans are found by rendering prefixes).
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        if completion_only_loss:
            spans = _assistant_spans(tokenizer, messages, text, row)
            labels = [
                token if any(lo <= start < hi for lo, hi in spans) else IGNORE_INDEX
                for token, (start, _) in zip(ids, encoded["offset_mapping"])
            ]
        else:
            labels = list(ids)
        out["input_ids"].append(ids)
        out["labels"].append(labels)
    return out


def group_texts(examples: dict[str, list[list[int]]], block_size: int) -> dict[str, list[list[int]]]:
    """Concatenate every column of a batch and cut it into full blocks of block_size (run_clm's group_texts)."""
    # Every column is concatenated in the same order, so input_ids and labels stay aligned token for token;
    # the tail that does not fill a block is dropped (padding it would waste compute on every step).
    concatenated = {k: [token for row in rows for token in row] for k, rows in examples.items()}
    total = len(next(iter(concatenated.values()), []))
    total = (total // block_size) * block_size
    return {k: [t[i : i + block_size] for i in range(0, total, block_size)] for k, t in concatenated.items()}


def _windows(examples: dict[str, list[list[int]]], block_size: int) -> dict[str, list[list[int]]]:
    """Cut each row on its own into windows of at most block_size tokens (packing off: no row mixing)."""
    out: dict[str, list[list[int]]] = {k: [] for k in examples}
    for i in range(len(examples["input_ids"])):
        length = len(examples["input_ids"][i])
        for start in range(0, length, block_size):
            # A 1-token window predicts nothing (its only token has no successor inside the window).
            if length - start < 2:
                continue
            for k in examples:
                out[k].append(examples[k][i][start : start + block_size])
    return out


def _add_mask_and_labels(batch: dict[str, list]) -> dict[str, list]:
    out = {"attention_mask": [[1] * len(ids) for ids in batch["input_ids"]]}
    if "labels" not in batch:
        out["labels"] = [list(ids) for ids in batch["input_ids"]]
    return out


def _truncate(batch: dict[str, list], block_size: int) -> dict[str, list]:
    return {k: [row[:block_size] for row in rows] for k, rows in batch.items()}


def build_lm_dataset(
    ds: Dataset,
    tokenizer: Any,
    args: LMDataArguments,
    block_size: int,
    packing: bool = True,
    completion_only_loss: bool = True,
    split: str = "train",
    source: str | None = None,
) -> Dataset:
    """Tokenize one raw split into input_ids / attention_mask / labels rows (blocks when packing).

    ``source`` (the file or Hub dataset the split came from) is named in error messages.
    """
    if block_size < 2:
        raise UserInputError(f"block_size must be >= 2 (one token predicts the next), got {block_size}.")
    where = f"the {split} data ({source})" if source else f"the {split} data"
    if len(ds) == 0:
        raise UserInputError(f"{where} is empty: it has no rows. Point to a file with data.")
    fmt = detect_format(ds.column_names, args, where)
    common = {"batched": True, "with_indices": True, "remove_columns": ds.column_names}
    if fmt == "text":
        # Blank documents (empty lines, trailing whitespace) would only add EOS tokens.
        ds = ds.filter(
            # Non-strings are kept so that tokenizing reports them with their row number.
            lambda b: [not isinstance(t, str) or t.strip() != "" for t in b],
            input_columns=args.text_column,
            batched=True,
            desc=f"dropping blank {split} documents",
        )
        if len(ds) == 0:
            raise UserInputError(
                f"the {split} data has no text: every document is blank. Point to a file with text."
            )
        fn = functools.partial(_tokenize_documents, tokenizer=tokenizer, column=args.text_column, split=split)
        common["remove_columns"] = ds.column_names
    elif fmt == "prompt_response":
        fn = functools.partial(
            _tokenize_prompt_response,
            tokenizer=tokenizer,
            prompt_column=args.prompt_column,
            response_column=args.response_column,
            completion_only_loss=completion_only_loss,
            split=split,
        )
    else:
        fn = functools.partial(
            _tokenize_messages,
            tokenizer=tokenizer,
            column=args.messages_column,
            completion_only_loss=completion_only_loss,
            split=split,
        )
    tokens = ds.map(fn, desc=f"tokenizing {split} ({fmt})", **common)
    n_tokens = int(row_lengths(tokens).sum())

    if packing:
        if "labels" not in tokens.column_names:
            tokens = tokens.map(lambda b: {"labels": b["input_ids"]}, batched=True)
        # One concatenation per 1000 rows (as run_clm): at most block_size - 1 tokens lost per 1000 rows.
        out = tokens.map(
            group_texts, batched=True, fn_kwargs={"block_size": block_size}, desc=f"packing {split}"
        )
        if len(out) == 0:
            raise UserInputError(
                f"the {split} text has {n_tokens} tokens, fewer than one block of block_size={block_size}: "
                "lower block_size or add text."
            )
    elif fmt == "text":
        out = tokens.map(
            _windows, batched=True, fn_kwargs={"block_size": block_size}, desc=f"windowing {split}"
        )
    else:
        # Windows would separate responses from their prompts: keep each example's first block_size tokens.
        too_long = int((row_lengths(tokens) > block_size).sum())
        if too_long:
            logger.warning(
                "%d of %d %s examples are longer than block_size=%d and were truncated.",
                too_long,
                len(tokens),
                split,
                block_size,
            )
        out = tokens.map(_truncate, batched=True, fn_kwargs={"block_size": block_size})
    out = out.map(_add_mask_and_labels, batched=True)
    if completion_only_loss and fmt != "text":
        # Rows whose response was truncated away (or a conversation without assistant turn) train nothing.
        before = len(out)
        out = out.filter(
            lambda b: [any(t != IGNORE_INDEX for t in row[1:]) for row in b],
            input_columns="labels",
            batched=True,
        )
        if len(out) < before:
            logger.warning(
                "dropped %d %s examples with no response token to learn.", before - len(out), split
            )
    if len(out) == 0:
        raise UserInputError(
            f"no {split} example has a token to learn (block_size={block_size}): raise block_size or check the "
            "responses / assistant turns."
        )
    return out.select_columns(["input_ids", "attention_mask", "labels"])


def split_lm_dataset(ds: Dataset, validation_split: float, seed: int) -> DatasetDict:
    """Hold out a seeded share of the examples (blocks) as 'validation'; at least one on each side."""
    n = len(ds)
    n_val = max(1, round(validation_split * n))
    if n - n_val < 1:
        raise UserInputError(
            f"only {n} example(s) (blocks, when packed): too few to hold out validation_split={validation_split}. "
            "Add text, lower block_size, or give a validation_file."
        )
    parts = ds.train_test_split(test_size=n_val, seed=seed, shuffle=True)
    return DatasetDict({"train": parts["train"], "validation": parts["test"]})


def load_lm_data(
    args: LMDataArguments,
    tokenizer: Any,
    block_size: int,
    packing: bool = True,
    completion_only_loss: bool = True,
) -> DatasetDict:
    """Load, tokenize, (pack and) split causal-LM data into 'train' and 'validation' splits."""
    raw = load_raw_datasets(args, text_sample_by=args.text_sample_by)
    built = DatasetDict(
        {
            split: build_lm_dataset(
                ds,
                tokenizer,
                args,
                block_size,
                packing,
                completion_only_loss,
                split,
                split_source(args, split),
            )
            for split, ds in raw.items()
        }
    )
    if "validation" not in built:
        built = split_lm_dataset(built["train"], args.validation_split, args.split_seed)
    built["train"] = subsample(built["train"], args.max_train_samples, args.split_seed)
    built["validation"] = subsample(built["validation"], args.max_eval_samples, args.split_seed)
    return built


# ---- batching --------------------------------------------------------------------------------------------


def lm_pad_token_id(tokenizer: Any = None, config: Any = None) -> int:
    """The id used to pad input_ids: the tokenizer's (or config's) pad token, else its EOS token."""
    for source in (tokenizer, config):
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, list):  # some generation configs list several EOS ids
                value = value[0] if value else None
            if value is not None:
                # Padding positions are masked out (attention 0, label -100), so reusing EOS is harmless.
                return int(value)
    raise UserInputError(
        "no pad or eos token id on the tokenizer or model config to pad batches with: pass processing_class "
        "with a pad_token or eos_token, or set model.config.pad_token_id."
    )


@dataclass
class LMDataCollator:
    """Right-pad causal-LM rows: input_ids with pad_token_id, attention_mask 0, labels -100, top-k columns 0."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack a list of rows into padded tensors (labels default to input_ids when a row has none)."""
        if not features:
            raise ValueError("LMDataCollator got an empty batch.")
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
        extra = [k for k in (TOPK_VALUES, TOPK_INDICES) if k in features[0]]
        for k in extra:
            batch[k] = []
        for f in features:
            ids = list(f["input_ids"])
            pad = longest - len(ids)
            mask = list(f["attention_mask"]) if "attention_mask" in f else [1] * len(ids)
            labels = list(f["labels"]) if "labels" in f else list(ids)
            batch["input_ids"].append(ids + [self.pad_token_id] * pad)
            batch["attention_mask"].append(mask + [0] * pad)
            batch["labels"].append(labels + [IGNORE_INDEX] * pad)
            for k in extra:
                rows = torch.as_tensor(f[k])
                # Padded positions carry label -100, so their (finite) zero top-k entries never enter a loss.
                batch[k].append(torch.nn.functional.pad(rows, (0, 0, 0, pad)))
        out = {k: torch.tensor(batch[k], dtype=torch.long) for k in ("input_ids", "attention_mask", "labels")}
        for k in extra:
            out[k] = torch.stack(batch[k])
        if TOPK_VALUES in out:
            out[TOPK_VALUES] = out[TOPK_VALUES].float()
        if TOPK_INDICES in out:
            out[TOPK_INDICES] = out[TOPK_INDICES].long()
        return out


# ---- batches of generated text (on-policy and sequence-level distillation) --------------------------------


def policy_prompts(
    batch: dict[str, torch.Tensor], prompt_tokens: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt of each row of a right-padded batch, left-padded for `generate`: (prompt_ids, prompt_mask).

    A row's prompt is what precedes its first learned token (labels != -100: the prompt of prompt/response or
    chat data). Plain text learns every token, so there the first ``prompt_tokens`` tokens are the prompt
    (at most all but one of the row's tokens).
    """
    if prompt_tokens < 1:
        raise ValueError(f"prompt_tokens must be >= 1, got {prompt_tokens}")
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    prompts = []
    for row_ids, row_mask, row_labels in zip(ids, mask, labels):
        length = int(row_mask.sum())
        learned = (row_labels[:length] != IGNORE_INDEX).nonzero()
        first = int(learned[0]) if len(learned) else length
        cut = first if first > 0 else min(prompt_tokens, max(length - 1, 1))
        prompts.append(row_ids[:cut])
    width = max(len(p) for p in prompts)
    prompt_ids = torch.full((len(prompts), width), pad_token_id, dtype=ids.dtype, device=ids.device)
    prompt_mask = torch.zeros((len(prompts), width), dtype=mask.dtype, device=mask.device)
    for i, p in enumerate(prompts):
        prompt_ids[i, width - len(p) :] = p
        prompt_mask[i, width - len(p) :] = 1
    return prompt_ids, prompt_mask


def completion_batch(
    sequences: torch.Tensor, prompt_mask: torch.Tensor, eos_token_ids: list[int] | None
) -> dict[str, torch.Tensor]:
    """A training batch from `generate`'s output (left-padded prompt + completion): labels on the completion.

    The completion is learned up to and including its first EOS; what follows it is padding (mask 0, label
    -100), found by position, never by id, so an EOS that is also the pad token is still learned. The prompt
    and its left padding carry label -100; position_ids count real tokens only, as `generate` did.
    """
    width = prompt_mask.shape[1]
    completion = sequences[:, width:]
    keep = torch.ones_like(completion, dtype=prompt_mask.dtype)
    if eos_token_ids:
        is_eos = torch.isin(completion, torch.tensor(eos_token_ids, device=completion.device))
        seen_before = is_eos.long().cumsum(dim=-1) - is_eos.long()  # EOS tokens strictly before each position
        keep = (seen_before == 0).to(prompt_mask.dtype)
    attention_mask = torch.cat([prompt_mask, keep], dim=1)
    labels = sequences.clone()
    labels[:, :width] = IGNORE_INDEX
    labels[attention_mask == 0] = IGNORE_INDEX
    position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
    return {
        "input_ids": sequences,
        "attention_mask": attention_mask,
        "labels": labels,
        "position_ids": position_ids,
    }


def retokenize_batch(
    batch: dict[str, torch.Tensor], tokenizer: Any, other_tokenizer: Any, pad_token_id: int
) -> dict[str, torch.Tensor]:
    """The same text in another tokenizer's ids (cross-tokenizer distillation): input_ids, attention_mask and
    ``learned`` (True on the tokens of the learned part), right-padded.

    Each row's prompt (before its first learned token) and learned part are decoded separately (special
    tokens dropped: each model's chat markup is its own) and tokenized by ``other_tokenizer``; a row that ends
    in the EOS token gets the other tokenizer's EOS.
    """
    rows, learned = [], []
    eos = getattr(tokenizer, "eos_token_id", None)
    other_eos = getattr(other_tokenizer, "eos_token_id", None)
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        length = int(mask.sum())
        marks = (labels[:length] != IGNORE_INDEX).nonzero()
        first = int(marks[0]) if len(marks) else length
        ids = ids[:length].tolist()
        prompt = tokenizer.decode(ids[:first], skip_special_tokens=True) if first else ""
        answer = tokenizer.decode(ids[first:], skip_special_tokens=True)
        other_prompt = other_tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        other_answer = other_tokenizer(answer, add_special_tokens=False)["input_ids"]
        if ids and eos is not None and ids[-1] == eos and other_eos is not None:
            other_answer = [*other_answer, other_eos]
        rows.append(other_prompt + other_answer)
        learned.append([False] * len(other_prompt) + [True] * len(other_answer))
    width = max(1, max(len(r) for r in rows))
    device = batch["input_ids"].device
    out_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=device)
    out_mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    out_learned = torch.zeros((len(rows), width), dtype=torch.bool, device=device)
    for i, (row, marks) in enumerate(zip(rows, learned)):
        out_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        out_mask[i, : len(row)] = 1
        out_learned[i, : len(row)] = torch.tensor(marks, dtype=torch.bool)
    return {"input_ids": out_ids, "attention_mask": out_mask, "learned": out_learned}
