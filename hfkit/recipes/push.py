"""Ship a trained model: build the exact folder to upload (weights, tokenizer, model card), then push it.

    hfkit push --model_dir outputs/distill/minilm_l3_sst2_demo --repo_id you/minilm-l3-sst2 \
        --datasets stanfordnlp/sst2 --license apache-2.0 --dry_run true

--dry_run builds the folder and prints what would be uploaded, touching no network. Without it the folder
is uploaded with huggingface_hub; the token comes from HF_TOKEN or `hf auth login` (never from the command
line, where it would land in the shell history).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hfkit.hub import CardInfo, prepare_upload_folder, push_to_hub
from hfkit.parsing import parse_args


@dataclass
class PushArguments:
    """What to upload, where to build it, and where it goes."""

    model_dir: str = field(metadata={"help": "Saved model folder: the output_dir of a training recipe."})
    repo_id: str | None = field(
        default=None, metadata={"help": "Hub repo 'namespace/name'; needed unless --dry_run."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "aliases": ["--out_dir"],
            "help": "Where the upload folder is built (and can be read before pushing); default: <model_dir>_upload.",
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an upload folder built by an earlier run."}
    )
    private: bool = field(
        default=True, metadata={"help": "Create the Hub repo private (existing repos keep theirs)."}
    )
    dry_run: bool = field(
        default=False, metadata={"help": "Only build the folder and list it; upload nothing."}
    )
    commit_message: str = field(default="Upload model with hfkit", metadata={"help": "Hub commit message."})

    def __post_init__(self):
        if not self.dry_run and not self.repo_id:
            raise ValueError(
                "--repo_id is required to push (e.g. your-username/model-name); or pass --dry_run true."
            )


ARG_TYPES = (PushArguments, CardInfo)


def main(argv: list[str] | None = None) -> Path:
    args, card_info = parse_args(ARG_TYPES, argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("hfkit").setLevel(logging.INFO)  # lists the files left out of the upload
    out = Path(args.output_dir or args.model_dir.rstrip("/") + "_upload")
    folder = prepare_upload_folder(args.model_dir, out, card_info, args.repo_id, args.overwrite_output_dir)

    files = sorted(folder.iterdir())
    print(f"Upload folder {folder} ({len(files)} files):")
    for path in files:
        print(f"  {path.name:<32} {path.stat().st_size / 1e6:>9.3f} MB")
    print(f"Model card: {folder / 'README.md'}")
    if args.dry_run:
        print("Dry run: nothing uploaded. Read the card, then run again without --dry_run to push.")
        return folder
    push_to_hub(folder, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(f"Pushed to https://huggingface.co/{args.repo_id}")
    return folder
