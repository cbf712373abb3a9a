"""An instruction LLM as a classifier's teacher: label-word log-probabilities as cached ``teacher_logits``.

The LLM reads each text inside a prompt (template with ``{text}``, optional system prompt and few-shot examples,
the model's chat template when it has one) and its next-token distribution at the answer position is read at
one token per class: the first token of each label word. The C log-probabilities are the row's teacher logits
(a softmax over them is the LLM's belief restricted to the label words), so `DistillTrainer` trains from them
as from any cached teacher.

Fast on a CPU: everything before ``{text}`` (system prompt, instructions, few-shot examples) is the same for
every row, so it runs once and its KV cache is shared by every batch; rows are sorted by length and
left-padded, and only the last position's logits are computed.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserInputError

TEXT_SLOT = "{text}"
# Stands in for the text while the chat template renders, so the prompt can be cut around it.
_SENTINEL = "\u2063HFKIT_TEXT\u2063"


@dataclass
class LabelPrompt:
    """How the LLM is asked: a template with ``{text}``, one label word per class, optional few-shot examples."""

    template: str
    label_words: list[str]
    system_prompt: str | None = None
    answer_prefix: str = ""
    few_shot: list[dict] = field(default_factory=list)
    use_chat_template: bool = True

    def __post_init__(self):
        if self.template.count(TEXT_SLOT) != 1:
            raise UserInputError(
                f"prompt_template must hold {TEXT_SLOT} exactly once (where the text goes), got "
                f"{self.template!r}."
            )
        if len(self.label_words) < 2:
            raise UserInputError(
                f"label_words needs one word per class (at least two), got {self.label_words!r}."
            )
        for i, shot in enumerate(self.few_shot):
            if not isinstance(shot, dict) or set(shot) != {"text", "label"}:
                raise UserInputError(
                    f"few_shot[{i}] must be a mapping with keys 'text' and 'label' (the class index or its "
                    f"label word), got {shot!r}."
                )

    def answer_word(self, label: Any) -> str:
        """The label word of a few-shot example's label (an index or the word itself)."""
        if isinstance(label, int) and 0 <= label < len(self.label_words):
            return self.label_words[label]
        if label in self.label_words:
            return str(label)
        raise UserInputError(
            f"few-shot label {label!r} is neither a class index nor one of label_words {self.label_words}."
        )


def render_prompt(prompt: LabelPrompt, tokenizer: Any) -> tuple[str, str]:
    """The prompt as (prefix, suffix) text around the row's text, in the model's chat template when used."""
    chat = prompt.use_chat_template and getattr(tokenizer, "chat_template", None)
    user = prompt.template.replace(TEXT_SLOT, _SENTINEL)
    if chat:
        messages = [{"role": "system", "content": prompt.system_prompt}] if prompt.system_prompt else []
        for shot in prompt.few_shot:
            messages.append(
                {"role": "user", "content": prompt.template.replace(TEXT_SLOT, str(shot["text"]))}
            )
            answer = prompt.answer_prefix + prompt.answer_word(shot["label"])
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": user})
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        parts = [prompt.system_prompt + "\n\n"] if prompt.system_prompt else []
        for shot in prompt.few_shot:
            filled = prompt.template.replace(TEXT_SLOT, str(shot["text"]))
            parts.append(f"{filled}\n{prompt.answer_prefix}{prompt.answer_word(shot['label'])}\n\n")
        parts.append(user + "\n")
        rendered = "".join(parts)
    rendered += prompt.answer_prefix
    prefix, suffix = rendered.split(_SENTINEL)
    return prefix, suffix


def label_token_ids(tokenizer: Any, suffix: str, label_words: list[str]) -> list[int]:
    """The token each label word starts with when it follows the prompt; distinct across classes."""
    tail = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    ids = []
    for word in label_words:
        full = tokenizer(suffix + word, add_special_tokens=False)["input_ids"]
        if full[: len(tail)] == tail and len(full) > len(tail):
            ids.append(full[len(tail)])
        else:  # the word merged with the end of the prompt: read it as it tokenizes alone
            alone = tokenizer(word, add_special_tokens=False)["input_ids"]
            if not alone:
                raise UserInputError(f"label word {word!r} tokenizes to nothing: use a real word.")
            ids.append(alone[0])
    if len(set(ids)) != len(ids):
        pieces = [tokenizer.convert_ids_to_tokens(i) for i in ids]
        raise UserInputError(
            f"label words {label_words} start with the same token(s) {pieces} after the prompt, so the LLM "
            "cannot tell them apart at the answer position: use words whose first tokens differ (e.g. "
            "'positive'/'negative', 'yes'/'no')."
        )
    return ids


class LLMLabeller:
    """Score texts with an instruction LLM: (rows, classes) log-probabilities of the label words' first tokens."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        prompt: LabelPrompt,
        batch_size: int = 16,
        max_length: int | None = 256,
    ):
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}.")
        self.model, self.tokenizer, self.prompt = model.eval(), tokenizer, prompt
        self.batch_size, self.max_length = batch_size, max_length
        prefix, suffix = render_prompt(prompt, tokenizer)
        self.suffix = suffix
        self.prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        self.label_ids = label_token_ids(tokenizer, suffix, prompt.label_words)
        # The same for every row: tokenized once, and the forward's KV-cache keyword looked up once.
        self.suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        self._cache_kwarg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self._prefix_cache = self._run_prefix()

    @torch.no_grad()
    def _run_prefix(self):
        """The shared prefix's KV cache (batch 1), computed once; None when the text opens the prompt."""
        if not self.prefix_ids:
            return None
        ids = torch.tensor([self.prefix_ids], device=self.model.device)
        out = self.model(input_ids=ids, use_cache=True)
        # transformers >= 5.2x names the KV cache `cache`; earlier 5.x releases `past_key_values`.
        return out.cache if getattr(out, "cache", None) is not None else out.past_key_values

    def _row_ids(self, text: str) -> list[int]:
        """The tokens after the shared prefix: the text (cut to max_length tokens) and the prompt's end."""
        text_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.max_length is not None:
            text_ids = text_ids[: self.max_length]
        return text_ids + self.suffix_ids

    @torch.no_grad()
    def _score_batch(self, rows: list[list[int]]) -> torch.Tensor:
        """Left-pad the rows after the prefix, run them on the shared cache, read the label tokens' log-probs."""
        width, n, start = max(len(r) for r in rows), len(rows), len(self.prefix_ids)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, start + width), dtype=torch.long)
        mask[:, :start] = 1
        positions = torch.zeros((n, width), dtype=torch.long)
        for i, row in enumerate(rows):
            pad = width - len(row)
            ids[i, pad:] = torch.tensor(row)
            mask[i, start + pad :] = 1
            positions[i, pad:] = torch.arange(start, start + len(row))
        cache = None
        if self._prefix_cache is not None:
            cache = copy.deepcopy(self._prefix_cache)
            cache.batch_repeat_interleave(n)
        device = self.model.device
        out = self.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            **{self._cache_kwarg: cache},
            use_cache=cache is not None,
            logits_to_keep=1,
        )
        log_probs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        return log_probs[:, self.label_ids].cpu()

    def score(self, texts: list[str], desc: str = "LLM labels") -> np.ndarray:
        """(len(texts), classes) float32 log-probabilities, in the order given; a progress bar with a time estimate."""
        rows = [self._row_ids(str(t)) for t in texts]
        order = np.argsort([len(r) for r in rows], kind="stable")[
            ::-1
        ]  # longest first: the estimate is an upper bound
        out = np.zeros((len(rows), len(self.label_ids)), dtype=np.float32)
        batches = math.ceil(len(rows) / self.batch_size)
        started = time.perf_counter()
        for b in tqdm(range(batches), desc=desc, unit="batch", mininterval=5.0):
            picked = order[b * self.batch_size : (b + 1) * self.batch_size]
            out[picked] = self._score_batch([rows[i] for i in picked]).numpy()
        self.seconds = time.perf_counter() - started
        return out
