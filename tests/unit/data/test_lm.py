"""Unit tests for hfkit.data.lm on a tiny word-level tokenizer (no Hub): packing, label masking, splits, errors.

`word_tokenizer` and `tiny_llama` are also used by the CLM trainer, cache and recipe tests.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import hfkit.data.lm as lm_module
from hfkit.data.lm import (
    TOPK_INDICES,
    TOPK_VALUES,
    LMDataArguments,
    LMDataCollator,
    build_lm_dataset,
    detect_format,
    group_texts,
    lm_pad_token_id,
    load_lm_data,
    split_lm_dataset,
)
from hfkit.data.sources import load_raw_datasets
from hfkit.errors import MissingInputError, UserInputError

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
WORDS = [f"w{i}" for i in range(40)] + [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "question",
    "answer",
    "hello",
    "world",
]
PAD, EOS, USER, ASSISTANT, END = 0, 3, 4, 5, 6
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)


def word_tokenizer(words: list[str] = WORDS) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer: one id per word, so token counts are easy to reason about."""
    vocab = {t: i for i, t in enumerate(SPECIALS + list(words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=SPECIALS[4:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(
    vocab_size: int = len(SPECIALS) + len(WORDS), layers: int = 2, seed: int = 0, **kw
) -> LlamaForCausalLM:
    """A random 2-layer Llama with hidden size 32: trains in milliseconds per step on one CPU thread."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD,
        bos_token_id=2,
        eos_token_id=EOS,
        tie_word_embeddings=False,
        **kw,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer()


def args(**kw) -> LMDataArguments:
    return LMDataArguments(**{"train_file": "unused.txt", **kw})


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


# ---- packing ---------------------------------------------------------------------------------------------


def test_group_texts_cuts_full_blocks_and_drops_the_tail():
    out = group_texts(
        {"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]], "labels": [[1, -100, 3], [4, 5], [6, 7, 8, 9]]}, 4
    )
    assert out["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    # Labels are cut at exactly the same places: a block's labels are its own tokens, never the next block's.
    assert out["labels"] == [[1, -100, 3, 4], [5, 6, 7, 8]]


def test_packed_text_blocks_are_full_with_eos_between_documents(tokenizer):
    docs = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10", "w11 w12 w13"]
    built = build_lm_dataset(Dataset.from_dict({"text": docs}), tokenizer, args(), block_size=4)
    stream = []
    for doc in docs:
        stream += ids_of(tokenizer, doc) + [EOS]
    assert len(stream) == 17  # 13 words + 4 EOS: 4 full blocks, 1 token dropped
    assert built["input_ids"] == [stream[i : i + 4] for i in range(0, 16, 4)]
    assert built["labels"] == built["input_ids"]
    assert all(mask == [1, 1, 1, 1] for mask in built["attention_mask"])


def test_unpacked_text_never_mixes_documents(tokenizer):
    docs = ["w1 w2 w3 w4 w5", "w6 w7"]
    built = build_lm_dataset(
        Dataset.from_dict({"text": docs}), tokenizer, args(), block_size=4, packing=False
    )
    w = {i: tokenizer.convert_tokens_to_ids(f"w{i}") for i in range(1, 8)}
    # Document 1 has 6 tokens with EOS: one full window + [w5, EOS]; document 2 one short window.
    assert built["input_ids"] == [[w[1], w[2], w[3], w[4]], [w[5], EOS], [w[6], w[7], EOS]]
    assert built["labels"] == built["input_ids"]


def test_txt_file_is_one_document_by_default_and_paragraphs_on_request(tmp_path, tokenizer):
    path = tmp_path / "corpus.txt"
    path.write_text("w1 w2\nw3\n\nw4 w5 w6\n")
    whole = build_lm_dataset(
        load_lm_data_raw(path, "document"), tokenizer, args(), block_size=8, packing=False
    )
    paragraphs = build_lm_dataset(
        load_lm_data_raw(path, "paragraph"), tokenizer, args(), block_size=8, packing=False
    )
    flat = [t for row in whole["input_ids"] for t in row]
    assert flat.count(EOS) == 1 and flat[-1] == EOS
    assert [t for row in paragraphs["input_ids"] for t in row].count(EOS) == 2


def load_lm_data_raw(path, sample_by: str):
    return load_raw_datasets(args(train_file=str(path), text_sample_by=sample_by), text_sample_by=sample_by)[
        "train"
    ]


# ---- prompt / response and chat ---------------------------------------------------------------------------


def test_prompt_tokens_are_masked_and_response_ends_with_eos(tmp_path, tokenizer):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "question w1 w2", "response": "answer w3"},
        {"prompt": "question w4", "response": "w5 w6 w7"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data_args = args(train_file=str(path), validation_file=str(path))
    data = load_lm_data(data_args, tokenizer, block_size=16, packing=False)
    first = data["train"][0]
    prompt, response = ids_of(tokenizer, "question w1 w2"), ids_of(tokenizer, "answer w3")
    assert first["input_ids"] == prompt + response + [EOS]
    assert first["labels"] == [-100] * 3 + response + [EOS]

    everything = load_lm_data(data_args, tokenizer, block_size=16, packing=False, completion_only_loss=False)
    assert everything["train"][0]["labels"] == first["input_ids"]


def test_packed_prompt_response_keeps_prompt_masks_in_blocks(tokenizer):
    ds = Dataset.from_dict({"prompt": ["w1 w2", "w3 w4"], "response": ["w5", "w6"]})
    built = build_lm_dataset(ds, tokenizer, args(), block_size=4)
    w = {i: tokenizer.convert_tokens_to_ids(f"w{i}") for i in range(1, 7)}
    # Stream: w1 w2 w5 EOS | w3 w4 w6 EOS -- two blocks, prompts masked inside each.
    assert built["input_ids"] == [[w[1], w[2], w[5], EOS], [w[3], w[4], w[6], EOS]]
    assert built["labels"] == [[-100, -100, w[5], EOS], [-100, -100, w[6], EOS]]


def test_long_prompt_truncated_away_drops_the_row(tokenizer):
    ds = Dataset.from_dict({"prompt": ["w1 w2 w3 w4 w5", "w1"], "response": ["w6", "w7"]})
    built = build_lm_dataset(ds, tokenizer, args(), block_size=3, packing=False)
    assert len(built) == 1 and built[0]["labels"][0] == -100


def test_chat_messages_learn_only_assistant_turns(tokenizer):
    conversation = [
        {"role": "user", "content": "hello w1"},
        {"role": "assistant", "content": "w2 w3"},
        {"role": "user", "content": "w4"},
        {"role": "assistant", "content": "w5"},
    ]
    built = build_lm_dataset(
        Dataset.from_dict({"messages": [conversation]}), tokenizer, args(), 64, packing=False
    )
    row = built[0]
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens == [
        "<|user|>",
        "hello",
        "w1",
        "<|end|>",
        "<|assistant|>",
        "w2",
        "w3",
        "<|end|>",
        "<|user|>",
        "w4",
        "<|end|>",
        "<|assistant|>",
        "w5",
        "<|end|>",
    ]
    learned = [tokens[i] for i, label in enumerate(row["labels"]) if label != -100]
    # Each assistant turn's content and its end token; never the user turns or the role headers.
    assert learned == ["w2", "w3", "<|end|>", "w5", "<|end|>"]


def test_format_detection_and_missing_columns(tokenizer):
    assert detect_format(["messages", "x"], args()) == "messages"
    assert detect_format(["prompt", "response"], args()) == "prompt_response"
    assert detect_format(["text", "id"], args()) == "text"
    with pytest.raises(ValueError, match=r"cannot tell the data format from columns \['body'\]"):
        detect_format(["body"], args())
    with pytest.raises(ValueError, match=r"needs column\(s\) \['answer'\].*Set text_column"):
        detect_format(["prompt", "response"], args(data_format="prompt_response", response_column="answer"))


def test_missing_columns_name_the_file_and_its_columns(tmp_path, tokenizer):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"prompt": "w1 w2", "response": "w3"}) + "\n")
    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"question": "w1", "answer": "w2"}) + "\n")
    where = rf"the validation data \({re.escape(str(val))}\) has columns \['question', 'answer'\]"
    with pytest.raises(UserInputError, match=where):
        files = args(train_file=str(train), validation_file=str(val), data_format="prompt_response")
        load_lm_data(files, tokenizer, 8, packing=False)


# ---- splits and batching ---------------------------------------------------------------------------------


def test_seeded_split_is_reproducible_and_disjoint():
    ds = Dataset.from_dict({"input_ids": [[i, i] for i in range(50)]})
    a, b = split_lm_dataset(ds, 0.2, seed=1), split_lm_dataset(ds, 0.2, seed=1)
    c = split_lm_dataset(ds, 0.2, seed=2)
    held_out = [row[0] for row in a["validation"]["input_ids"]]
    assert len(held_out) == 10 and held_out == [row[0] for row in b["validation"]["input_ids"]]
    assert set(held_out).isdisjoint(row[0] for row in a["train"]["input_ids"])
    assert held_out != [row[0] for row in c["validation"]["input_ids"]]
    with pytest.raises(ValueError, match="too few to hold out"):
        split_lm_dataset(ds.select([0]), 0.2, seed=1)


def test_collator_pads_labels_with_ignore_index_and_topk_with_zeros():
    rows = [
        {
            "input_ids": [5, 6, 7],
            "attention_mask": [1, 1, 1],
            "labels": [-100, 6, 7],
            TOPK_VALUES: [[1.0, 0.5]] * 3,
            TOPK_INDICES: [[6, 7]] * 3,
        },
        {
            "input_ids": [8],
            "attention_mask": [1],
            "labels": [8],
            TOPK_VALUES: [[2.0, 1.0]],
            TOPK_INDICES: [[8, 9]],
        },
    ]
    batch = LMDataCollator(pad_token_id=PAD)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch[TOPK_VALUES].shape == (2, 3, 2) and batch[TOPK_VALUES].dtype == torch.float32
    assert (
        batch[TOPK_INDICES][1].tolist() == [[8, 9], [0, 0], [0, 0]]
        and batch[TOPK_INDICES].dtype == torch.long
    )


def test_pad_id_falls_back_to_eos(tokenizer):
    assert lm_pad_token_id(tokenizer) == PAD
    assert lm_pad_token_id(None, LlamaConfig(pad_token_id=None, eos_token_id=[7, 8])) == 7
    with pytest.raises(ValueError, match="no pad or eos token id"):
        lm_pad_token_id(None, LlamaConfig(pad_token_id=None, eos_token_id=None))


# ---- errors ----------------------------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path, tokenizer):
    with pytest.raises(MissingInputError, match="train_file not found: .*nope.txt"):
        load_lm_data(args(train_file=str(tmp_path / "nope.txt")), tokenizer, 8)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserInputError, match="is empty"):
        load_lm_data(args(train_file=str(tmp_path / "empty.txt")), tokenizer, 8)
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    with pytest.raises(ValueError, match="every document is blank"):
        load_lm_data(args(train_file=str(tmp_path / "blank.txt"), text_sample_by="line"), tokenizer, 8)


def test_text_shorter_than_one_block(tmp_path, tokenizer):
    (tmp_path / "short.txt").write_text("w1 w2 w3")
    with pytest.raises(
        ValueError, match="has 4 tokens, fewer than one block of block_size=8: lower block_size"
    ):
        load_lm_data(args(train_file=str(tmp_path / "short.txt")), tokenizer, 8)


def test_non_text_value_names_the_row(tokenizer):
    ds = Dataset.from_dict({"prompt": ["w1", None], "response": ["w2", "w3"]})
    with pytest.raises(ValueError, match="train row 1, column 'prompt': expected text"):
        build_lm_dataset(ds, tokenizer, args(), 8)


def test_a_template_with_generation_blocks_gives_the_same_labels_through_transformers_mask(
    tokenizer, monkeypatch
):
    conversation = [
        {"role": "user", "content": "hello w1"},
        {"role": "assistant", "content": "w2 w3"},
        {"role": "user", "content": "w4"},
        {"role": "assistant", "content": "w5"},
    ]
    data = Dataset.from_dict({"messages": [conversation]})
    by_spans = build_lm_dataset(data, tokenizer, args(), 64, packing=False)[0]
    marked = word_tokenizer()
    # The same rendering, with the assistant's text (and its end token) inside {% generation %} blocks.
    marked.chat_template = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|> ' }}"
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + ' <|end|> ' }}{% endgeneration %}"
        "{% else %}{{ m['content'] + ' <|end|> ' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
    )
    # The marked template must not need the prefix-rendering search at all.
    monkeypatch.setattr(lm_module, "_assistant_spans", lambda *a, **k: pytest.fail("prefix search used"))
    by_mask = build_lm_dataset(data, marked, args(), 64, packing=False)[0]
    assert by_mask["input_ids"] == by_spans["input_ids"] and by_mask["labels"] == by_spans["labels"]
    assert sum(label != -100 for label in by_mask["labels"]) == 5  # w2 w3 <|end|> w5 <|end|>


def test_chat_data_needs_a_chat_template():
    plain = word_tokenizer()
    plain.chat_template = None
    ds = Dataset.from_dict(
        {"messages": [[{"role": "user", "content": "w1"}, {"role": "assistant", "content": "w2"}]]}
    )
    with pytest.raises(ValueError, match="has no chat_template"):
        build_lm_dataset(ds, plain, args(), 8)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="No data given"):
        LMDataArguments()
    with pytest.raises(ValueError, match="text_sample_by must be one of"):
        args(text_sample_by="chapter")
    with pytest.raises(ValueError, match="validation_split must be in"):
        args(validation_split=1.0)
