"""An LLM as a classifier's teacher (hfkit.teacher_cache.llm): prompt rendering, label tokens, cached scoring."""

from __future__ import annotations

import pytest
import torch

from hfkit.errors import UserInputError
from hfkit.teacher_cache.llm import LabelPrompt, LLMLabeller, label_token_ids, render_prompt
from tests.unit.data.test_lm import tiny_llama, word_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = [
    "review",
    "is",
    "it",
    "positive",
    "negative",
    "good",
    "bad",
    "film",
    "the",
    "plot",
    "sentiment",
    "yes",
]
TEXTS = ["good film", "the plot is bad", "film", "the film is good the plot is good the film is bad", "bad"]


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer(WORDS)


def full_prompt_scores(
    model, tokenizer, prompt: LabelPrompt, text: str, label_ids: list[int]
) -> torch.Tensor:
    """The label tokens' log-probs from one plain forward over the whole prompt (no cache, no padding)."""
    prefix, suffix = render_prompt(prompt, tokenizer)
    ids = (
        tokenizer(prefix, add_special_tokens=False)["input_ids"]
        + tokenizer(text, add_special_tokens=False)["input_ids"]
        + tokenizer(suffix, add_special_tokens=False)["input_ids"]
    )
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.log_softmax(logits, -1)[label_ids]


@pytest.mark.parametrize(
    "prompt",
    [
        LabelPrompt("review {text} is it positive or negative", ["negative", "positive"]),
        LabelPrompt(
            "review {text} is it positive or negative",
            ["negative", "positive"],
            system_prompt="sentiment",
            few_shot=[{"text": "good film", "label": 1}, {"text": "bad plot", "label": "negative"}],
        ),
        LabelPrompt(
            "{text} sentiment", ["negative", "positive"], use_chat_template=False
        ),  # no shared prefix
    ],
    ids=["chat", "chat-few-shot", "plain-text-first"],
)
def test_batched_cached_scores_equal_one_plain_forward_per_row(tokenizer, prompt):
    model = tiny_llama(vocab_size=len(tokenizer), seed=3)
    labeller = LLMLabeller(model, tokenizer, prompt, batch_size=2)  # rows of different lengths share batches
    scores = labeller.score(TEXTS)
    assert scores.shape == (len(TEXTS), 2)
    for i, text in enumerate(TEXTS):
        expected = full_prompt_scores(model, tokenizer, prompt, text, labeller.label_ids)
        torch.testing.assert_close(torch.from_numpy(scores[i]), expected, atol=1e-5, rtol=1e-5)
    # The few-shot examples are in the shared prefix, with their answers.
    if prompt.few_shot:
        prefix, _ = render_prompt(prompt, tokenizer)
        assert "good film" in prefix and "<|assistant|> positive" in prefix and "sentiment" in prefix


def test_label_tokens_are_read_after_the_prompt_and_must_differ(tokenizer):
    ids = label_token_ids(tokenizer, " <|end|> <|assistant|> ", ["negative", "positive"])
    assert tokenizer.convert_ids_to_tokens(ids) == ["negative", "positive"]
    with pytest.raises(UserInputError, match="start with the same token"):
        label_token_ids(tokenizer, "", ["good", "good film"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": "no slot here"}, "exactly once"),
        ({"label_words": ["yes"]}, "one word per class"),
        ({"few_shot": [{"text": "good"}]}, "keys 'text' and 'label'"),
    ],
)
def test_bad_prompts_are_refused(kwargs, message):
    values = {"template": "{text}", "label_words": ["negative", "positive"], **kwargs}
    with pytest.raises(UserInputError, match=message):
        LabelPrompt(**values)
