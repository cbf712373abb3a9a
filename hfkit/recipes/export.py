"""Export a causal LM to OpenVINO for fast greedy decoding on a CPU (float32, or int8 weights).

    hfkit export --model_name_or_path outputs/clm/smollm2_shakespeare --output_dir outputs/deploy/smollm2_ov_int8 \
        --int8_weights true
    hfkit generate --model_name_or_path outputs/deploy/smollm2_ov_int8 --prompt "ROMEO:" --chat_template false

Order: args -> export (hfkit.compress.openvino_lm) -> say how to decode it.
"""

import logging

from hfkit.compress.openvino_lm import OpenVinoLMArguments, export_openvino_lm
from hfkit.errors import UserInputError
from hfkit.parsing import parse_args

ARG_TYPES = (OpenVinoLMArguments,)
logger = logging.getLogger("hfkit")


def main(argv: list[str] | None = None) -> str:
    (args,) = parse_args(ARG_TYPES, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    logging.getLogger("hfkit.compress").setLevel(logging.INFO)
    missing = [f"--{k}" for k in ("model_name_or_path", "output_dir") if getattr(args, k) is None]
    if missing:
        raise UserInputError(
            f"give {' and '.join(missing)}: the causal LM folder to export and a new folder for it."
        )
    folder = export_openvino_lm(args.model_name_or_path, args.output_dir, int8_weights=args.int8_weights)
    print(
        f"OpenVINO model in {folder}; decode it with: hfkit generate --model_name_or_path {folder} --prompt ..."
    )
    return folder
