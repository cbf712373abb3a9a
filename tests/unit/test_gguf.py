"""hfkit.modeling's GGUF path on a tiny GGUF written here, so it runs everywhere (the real SmolLM2 file only
exists after scripts/get_smollm2.sh): find_gguf_file, load_causal_lm(gguf_file=...), convert_gguf_checkpoint.

The file is laid out as llama.cpp writes SmolLM2's: llama architecture, Q4_1 matrices and float32 norms, query
and key rows permuted for llama.cpp's rotary layout, tied embeddings (no output.weight), grouped-query attention
and a byte-level BPE ("gpt2") vocabulary with control tokens, merges and a chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

from hfkit.generation import GenerateArguments, generate
from hfkit.modeling import convert_gguf_checkpoint, find_gguf_file, load_causal_lm, load_causal_lm_tokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # pad, bos, eos (as in SmolLM2)
MERGES = ["Ġ t", "h e", "Ġt he", "i s"]
TOKENS = SPECIAL + list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in MERGES]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 32, 2
QUANT = gguf.GGMLQuantizationType.Q4_1  # the SmolLM2 wheel's type; blocks of 32 along each row

# transformers' Llama parameter names -> llama.cpp's tensor names.
LAYER_TENSORS = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}  # fmt: skip
GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    **{
        f"model.layers.{i}.{hf}.weight": f"blk.{i}.{name}.weight"
        for i in range(LAYERS)
        for hf, name in LAYER_TENSORS.items()
    },
}


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py reorders q/k rows from HF's rotate-half layout to interleaved pairs."""
    pairs = weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
    return pairs.swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(path: Path, model: LlamaForCausalLM) -> None:
    """Write `model` as a Q4_1 GGUF with the byte-level vocabulary above, and set the model's matrices to what
    the file holds (Q4_1 rounded), so that it is the model the file describes."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(TOKENS)
    writer.add_token_types(
        [gguf.TokenType.CONTROL] * len(SPECIAL) + [gguf.TokenType.NORMAL] * (len(TOKENS) - len(SPECIAL))
    )
    writer.add_token_merges(MERGES)
    writer.add_pad_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(TEMPLATE)
    with torch.no_grad():
        for hf_name, gguf_name in GGUF_NAMES.items():
            parameter = model.get_parameter(hf_name)
            weight = parameter.numpy().copy()
            if parameter.ndim == 1:  # norms stay float32, as llama.cpp keeps them
                writer.add_tensor(gguf_name, weight)
                continue
            # Permuting rows commutes with Q4_1's row-wise blocks, so the model keeps HF's layout.
            parameter.copy_(
                torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(weight, QUANT), QUANT))
            )
            if ".attn_q." in gguf_name:
                weight = llama_cpp_permute(weight, config.num_attention_heads)
            elif ".attn_k." in gguf_name:
                weight = llama_cpp_permute(weight, config.num_key_value_heads)
            writer.add_tensor(gguf_name, gguf.quants.quantize(weight, QUANT), raw_dtype=QUANT)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, LlamaForCausalLM]:
    """(the .gguf file, alone in its folder; the float model it describes)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(TOKENS), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
        tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny-q4_1.gguf"
    write_tiny_gguf(path, model)
    return path, model


def logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


# "this is the" in the byte-level BPE above: "i s" merges, " the" merges to "Ġthe" (ranks 0, 1, 2).
TEXT, PIECES = "this is the", ["t", "h", "is", "Ġ", "is", "Ġthe"]


def test_the_gguf_loads_as_the_model_and_tokenizer_it_holds(tiny_gguf):
    path, expected = tiny_gguf
    assert find_gguf_file(path.parent) == path
    model = load_causal_lm(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tokenizer = load_causal_lm_tokenizer(str(path.parent), gguf_file=path.name)
    ids = tokenizer(TEXT).input_ids
    assert ids == [TOKENS.index(piece) for piece in PIECES]
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == tuple(SPECIAL)
    assert tokenizer.chat_template == TEMPLATE
    # Dequantized, un-permuted and tied: the very numbers of the model the file was written from.
    assert model.config.num_key_value_heads == KV_HEADS and model.config.tie_word_embeddings
    assert torch.equal(logits(model, ids), logits(expected, ids))


def test_a_folder_holding_only_the_gguf_needs_gguf_file(tiny_gguf):
    path, _ = tiny_gguf
    with pytest.raises(FileNotFoundError, match=f"no config.json.*gguf_file='{path.name}'"):
        load_causal_lm(str(path.parent))


def test_convert_writes_a_plain_checkpoint_that_computes_what_the_gguf_does(tiny_gguf, tmp_path):
    path, expected = tiny_gguf
    out = convert_gguf_checkpoint(path.parent, tmp_path / "tiny")
    assert out == tmp_path / "tiny" and not (tmp_path / "tiny.partial").exists()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.gguf"))
    # Dense float32 weights and no quantization_config: a plain folder that loads without the GGUF.
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    saved = load_file(out / "model.safetensors")
    state = expected.state_dict()
    assert all(tensor.dtype == torch.float32 for tensor in saved.values())
    assert all(torch.equal(tensor, state[name]) for name, tensor in saved.items()), sorted(saved)
    assert set(GGUF_NAMES) <= set(saved)

    model, tokenizer = load_causal_lm(str(out)), load_causal_lm_tokenizer(str(out))
    assert getattr(model.config, "quantization_config", None) is None and model.dtype == torch.float32
    ids = tokenizer(TEXT).input_ids
    assert ids == [TOKENS.index(piece) for piece in PIECES] and tokenizer.chat_template == TEMPLATE
    assert torch.equal(logits(model, ids), logits(expected, ids))
    args = GenerateArguments(max_new_tokens=6)
    assert generate(model, tokenizer, [TEXT], args) == generate(expected, tokenizer, [TEXT], args)

    # An existing folder is kept unless overwrite is asked for.
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert_gguf_checkpoint(path, out)
    assert convert_gguf_checkpoint(path, out, overwrite=True) == out
