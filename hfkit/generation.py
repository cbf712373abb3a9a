"""Text generation with a causal LM: prompts from the command line or a file, greedy or sampled, batched.

Everything that decodes is transformers' own ``model.generate`` driven by a ``GenerationConfig``; this module
only prepares prompts (chat template, left padding) and collects the new text.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import CompileConfig, GenerationConfig, PreTrainedModel, TextStreamer, set_seed

from .data.lm import completion_batch, policy_prompts

logger = logging.getLogger(__name__)

# Devices on which transformers compiles the decoding step (see GenerationMixin._valid_auto_compile_criteria).
COMPILE_DEVICES = ("cuda", "xpu")


@dataclass
class GenerateArguments:
    """What to generate from, and how."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Causal LM: local folder (e.g. models/smollm2-135m, made by scripts/get_smollm2.sh), "
            "Hub id, or 'wheel:<module>'. Needed by `hfkit generate`; the Python API takes the model itself."
        },
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "Load this .gguf file inside model_name_or_path (dequantized to float)."},
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata={
            "help": "Weights dtype; auto keeps the checkpoint's, except on a CPU with native bf16 (AVX512-BF16 or "
            "AMX), where hfkit generate decodes in bfloat16 (as training's auto rule; HFKIT_AUTO_BF16=0 turns it off)."
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ...; default: cuda if any."}
    )
    prompt: list[str] | None = field(
        default=None,
        # append: `--prompt a --prompt b` gives both prompts (a plain list flag would keep only the last).
        metadata={"help": "A prompt; repeat the flag for more.", "action": "append"},
    )
    prompts_file: str | None = field(
        default=None,
        metadata={"help": "One prompt per line (.txt), or a .jsonl of objects with a `prompt_field` key."},
    )
    prompt_field: str = field(
        default="prompt", metadata={"help": "Key of the prompt in a .jsonl prompts_file."}
    )
    chat_template: bool = field(
        default=True,
        metadata={
            "help": "Wrap each prompt as a user turn with the tokenizer's chat template, when it has one."
        },
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message put before each prompt (chat template only)."}
    )
    max_new_tokens: int = field(default=128, metadata={"help": "Most tokens generated per prompt."})
    do_sample: bool = field(default=False, metadata={"help": "Sample; otherwise greedy decoding."})
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (do_sample only)."}
    )
    top_k: int | None = field(
        default=None, metadata={"help": "Sample from the k likeliest tokens (do_sample only)."}
    )
    top_p: float | None = field(
        default=None,
        metadata={"help": "Nucleus sampling: smallest set with this probability (do_sample only)."},
    )
    repetition_penalty: float | None = field(
        default=None, metadata={"help": "> 1 discourages repeating tokens (greedy or sampled)."}
    )
    seed: int = field(default=42, metadata={"help": "Random seed (makes sampling reproducible)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts generated together (left-padded)."})
    stream: bool = field(
        default=False,
        metadata={"help": "Print tokens as they come; generates one prompt at a time (batch size 1)."},
    )
    static_cache: bool = field(
        default=False,
        metadata={"help": "Pre-allocated (static) KV cache: fixed shapes, needed by --compile."},
    )
    compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the decoding step (GPU only; implies --static_cache). First call is slow."
        },
    )
    assistant_model: str | None = field(
        default=None,
        metadata={
            "help": "Assisted (speculative) decoding: a small draft model (e.g. a distilled student of the "
            "model) proposes tokens that the model checks in one forward; greedy output is the model's own. "
            "One prompt at a time. A draft of another tokenizer works too (universal assisted decoding)."
        },
    )
    output_file: str | None = field(
        default=None, metadata={"help": "Write {prompt, completion} lines to this jsonl."}
    )

    def __post_init__(self):
        # --prompt with action=append and nargs=+ gives a list of lists on the command line, a flat list from YAML.
        if self.prompt is not None:
            self.prompt = [p for item in self.prompt for p in (item if isinstance(item, list) else [item])]
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (
                self.temperature is None or self.temperature > 0,
                f"temperature must be > 0, got {self.temperature}",
            ),
            (self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (self.top_p is None or 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (
                self.repetition_penalty is None or self.repetition_penalty > 0,
                f"repetition_penalty must be > 0, got {self.repetition_penalty}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        sampling = {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
        set_without_sampling = [k for k, v in sampling.items() if v is not None and not self.do_sample]
        if set_without_sampling:
            # Greedy decoding would silently ignore them.
            raise ValueError(
                f"{', '.join(set_without_sampling)} only apply when sampling: add --do_sample true."
            )
        if self.compile:
            self.static_cache = True  # compiling needs fixed shapes, which only the static cache gives


def read_prompts(path: str | Path, prompt_field: str = "prompt") -> list[str]:
    """Prompts from a text file (one per non-empty line) or a .jsonl file (the `prompt_field` of each object)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}; pass an existing .txt or .jsonl file.")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not valid JSON ({err.msg}); write one JSON object a line."
                ) from err
            if not isinstance(row, dict) or not isinstance(row.get(prompt_field), str):
                raise ValueError(
                    f"{path}:{number}: expected an object with a string {prompt_field!r} field; "
                    "set --prompt_field to the key your file uses."
                )
            prompts.append(row[prompt_field])
    else:
        prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts.")
    return prompts


def collect_prompts(args: GenerateArguments) -> list[str]:
    """The command-line prompts followed by those of the prompts file."""
    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        prompts += read_prompts(args.prompts_file, args.prompt_field)
    if not prompts:
        raise ValueError("no prompts: give --prompt TEXT (repeatable) and/or --prompts_file PATH.")
    return prompts


@dataclass
class Generation:
    """One prompt's completion: the new text, its token ids, and what producing it cost."""

    prompt: str
    text: str
    token_ids: list[int]  # the new tokens only: no prompt, no left padding, no pads after an early stop
    prompt_tokens: int  # the prompt's length in tokens (chat template included)
    seconds: float  # wall time of the `generate` call that produced it (shared by a batch's prompts)
    batch_size: int  # prompts generated together in that call

    @property
    def tokens_per_second(self) -> float:
        """New tokens of this prompt per second of its batch's wall time."""
        return len(self.token_ids) / self.seconds if self.seconds > 0 else float("nan")


def prepare_tokenizer(tokenizer) -> None:
    """Make a tokenizer ready for batched decoder-only generation: a pad token (eos if none), left padding."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                "the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token first."
            )
        # Safe: padded positions are masked out, and the pad id is only read where the mask is 0.
        tokenizer.pad_token = tokenizer.eos_token
    # A decoder continues from the last position, so the padding has to go on the left.
    tokenizer.padding_side = "left"


def build_generation_config(args: GenerateArguments, tokenizer) -> GenerationConfig:
    """The GenerationConfig for `args`; unset values fall back to the model's own generation_config."""
    values = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": args.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "repetition_penalty": args.repetition_penalty,
        # Static KV cache: fixed tensor shapes, so transformers can compile the decoding step on a GPU.
        "cache_implementation": "static" if args.static_cache else None,
        "compile_config": CompileConfig() if args.compile else None,
        # Without --compile a static cache is used as is (transformers would otherwise compile it on GPU).
        "disable_compile": not args.compile,
    }
    if args.do_sample:
        values.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    return GenerationConfig(**{k: v for k, v in values.items() if v is not None})


def format_prompts(tokenizer, prompts: list[str], args: GenerateArguments) -> tuple[list[str], bool]:
    """Apply the chat template when asked and available; return the texts and whether the template was used."""
    if not (args.chat_template and getattr(tokenizer, "chat_template", None)):
        if args.system_prompt is not None:
            raise ValueError(
                "system_prompt needs a chat template: the tokenizer has none, or --chat_template false."
            )
        return prompts, False
    system = [{"role": "system", "content": args.system_prompt}] if args.system_prompt is not None else []
    texts = [
        tokenizer.apply_chat_template(
            [*system, {"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    return texts, True


def generate(model: PreTrainedModel, tokenizer, prompts: list[str], args: GenerateArguments) -> list[str]:
    """Generate a completion (the new text only) for each prompt, in order."""
    return [g.text for g in generate_details(model, tokenizer, prompts, args)]


@torch.inference_mode()
def generate_details(
    model: PreTrainedModel,
    tokenizer,
    prompts: list[str],
    args: GenerateArguments,
    assistant: PreTrainedModel | None = None,
    assistant_tokenizer=None,
) -> list[Generation]:
    """As `generate`, with each completion's token ids, prompt length and timing (`Generation`).

    `assistant` (with its tokenizer when it differs from the model's) drafts tokens for assisted decoding;
    transformers' assisted generation takes one sequence at a time, so prompts then go one by one.
    """
    if not prompts:
        raise ValueError("no prompts to generate from.")
    if args.compile and model.device.type not in COMPILE_DEVICES:
        raise ValueError(
            f"--compile needs a GPU ({'/'.join(COMPILE_DEVICES)}); the model is on {model.device.type}. "
            "Drop --compile (--static_cache alone runs on CPU)."
        )
    prepare_tokenizer(tokenizer)
    config = build_generation_config(args, tokenizer)
    texts, templated = format_prompts(tokenizer, prompts, args)
    model.eval()
    set_seed(args.seed)
    # Streaming prints one sequence as it grows, and assisted decoding verifies one, so both go one at a time.
    batch_size = 1 if args.stream or assistant is not None else args.batch_size
    assisted = {}
    if assistant is not None:
        assistant.eval()
        assisted["assistant_model"] = assistant
        if assistant_tokenizer is not None and assistant_tokenizer.get_vocab() != tokenizer.get_vocab():
            # Universal assisted decoding: the draft's text is re-tokenized for the model.
            assisted.update(tokenizer=tokenizer, assistant_tokenizer=assistant_tokenizer)
    if args.stream and args.batch_size > 1 and len(prompts) > 1:
        logger.info("--stream: generating the %d prompts one at a time (no batching)", len(prompts))
    eos = set(eos_token_ids(model, tokenizer, config))
    accepted = set(inspect.signature(model.forward).parameters)
    completions = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            # The chat template already wrote the special tokens (e.g. BOS) it wants.
            add_special_tokens=not templated,
        ).to(model.device)
        # A tokenizer may return inputs the model does not take (BERT-style token_type_ids): generate refuses them.
        inputs = {k: v for k, v in batch.items() if k in accepted}
        streamer = None
        if args.stream:
            print(f">>> {prompts[start]}", flush=True)  # the streamer then prints the completion under it
            streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)  # time the decoding, not the queue before it
        start_time = time.perf_counter()
        output = model.generate(**inputs, generation_config=config, streamer=streamer, **assisted)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        seconds = time.perf_counter() - start_time
        # Left padding: every row's prompt ends at the same column, so the new tokens start there.
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        texts_out = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
        for row, (ids, text) in enumerate(zip(new_tokens.tolist(), texts_out, strict=True)):
            # A row that stopped early (eos) is filled with pads up to the batch's longest row: cut them.
            ids = _until_eos(ids, eos)
            completions.append(
                Generation(
                    prompts[start + row], text, ids, int(prompt_lengths[row]), seconds, len(new_tokens)
                )
            )
    return completions


def eos_token_ids(
    model: PreTrainedModel, tokenizer=None, config: GenerationConfig | None = None
) -> list[int]:
    """The ids that end a generated sequence: `config`'s, else the model's generation config's (an instruct model
    often lists its end-of-turn token there too), else the tokenizer's; [] when none is set.

    The one place hfkit decides this: `generate`, on-policy batches (`CLMTrainer.generated_batch`) and the
    clm report's sample scores all stop where it says.
    """
    model_config = getattr(model, "generation_config", None)
    for eos in (
        getattr(config, "eos_token_id", None),
        getattr(model_config, "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ):
        if eos is not None:
            return [eos] if isinstance(eos, int) else list(dict.fromkeys(eos))
    return []


def _until_eos(ids: list[int], eos: set[int]) -> list[int]:
    """The ids up to and including the first eos; without one, all of them (the row ran to max_new_tokens)."""
    for i, token in enumerate(ids):
        if token in eos:
            return ids[: i + 1]
    return ids


def write_jsonl(path: str | Path, prompts: list[str], completions: list[str]) -> Path:
    """Write one {"prompt", "completion"} object a line (UTF-8, non-ASCII kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for prompt, completion in zip(prompts, completions, strict=True):
            f.write(json.dumps({"prompt": prompt, "completion": completion}, ensure_ascii=False) + "\n")
    return path


@torch.no_grad()
def teacher_nll_of_samples(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    batch: dict[str, torch.Tensor],
    prompt_tokens: int,
    max_new_tokens: int,
    pad_token_id: int,
    eos_token_ids: list[int] | None = None,
    seed: int = 0,
    temperature: float = 1.0,
) -> dict[str, float]:
    """How likely the teacher finds the student's own samples: the quantity on-policy distillation optimises.

    The student continues the prompt of each row of `batch` (`hfkit.data.lm.policy_prompts`), sampled at
    `temperature` from `seed` (the same prompts and seed give comparable figures across students); returns the
    teacher's and the student's mean negative log-likelihood per generated token (up to the first EOS) and
    the token count. Lower teacher NLL = samples the teacher would have written.
    """
    prompt_ids, prompt_mask = policy_prompts(batch, prompt_tokens, pad_token_id)
    was_training = student.training
    student.eval()
    teacher.eval()
    try:
        set_seed(seed)
        sequences = student.generate(
            input_ids=prompt_ids.to(student.device), attention_mask=prompt_mask.to(student.device),
            max_new_tokens=max_new_tokens, do_sample=temperature > 0, pad_token_id=pad_token_id,
            **({"temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {}),
            **({"eos_token_id": eos_token_ids} if eos_token_ids else {}),
        )  # fmt: skip
        generated = completion_batch(sequences.cpu(), prompt_mask, eos_token_ids)
        labels = generated["labels"][:, 1:]
        keep = labels != -100
        result = {"tokens": int(keep.sum())}
        for name, model in (("teacher", teacher), ("student", student)):
            inputs = {
                k: generated[k].to(model.device) for k in ("input_ids", "attention_mask", "position_ids")
            }
            log_probs = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1).cpu()
            picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            result[f"{name}_nll"] = float(-(picked[keep]).mean()) if result["tokens"] else float("nan")
    finally:
        student.train(was_training)
    return result
