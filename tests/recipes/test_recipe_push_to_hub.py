"""`push_to_hub: true` in a training recipe uploads through hfkit's checked upload (the one `hfkit push` uses),
never through Trainer's own pushing, which uploads output_dir as it stands (training_args.bin, run.json)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from transformers import Trainer

from hfkit.errors import UserInputError
from hfkit.hub import upload as hub_upload
from tests.conftest import write_tiny_model, write_toy_tsv
from tests.recipes.test_classify_recipe import load_recipe
from tests.recipes.test_clm_recipe import LINES, write_tiny_lm
from tests.trainers.test_incremental_trainer import _deployed_bad_good_and_new_meh

TOKEN = "hf_FakeTokenForTestsOnly0123456789abcdef"
COMMON = ["--output_dir", "{out}", "--use_cpu", "true", "--max_steps", "2", "--save_strategy", "steps",
          "--save_steps", "1", "--eval_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
          "--push_to_hub", "true", "--hub_model_id", "me/tiny"]  # fmt: skip


@pytest.fixture
def hub(monkeypatch):
    """The Hub calls of a run, recorded in place of the unreachable Hub: hfkit's upload and Trainer's own."""
    calls = []

    class FakeHfApi:
        def __init__(self, token=None):
            self.token = token  # never used: nothing reaches the Hub

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, folder_path, **kwargs):
            # The staged folder is deleted after the push: record what it held when it was uploaded.
            calls.append(("upload_folder", {p.name for p in Path(folder_path).iterdir()}, kwargs))

    monkeypatch.setattr(hub_upload, "HfApi", FakeHfApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: TOKEN)  # as after `hf auth login`
    for name in ("init_hf_repo", "push_to_hub", "_push_from_checkpoint"):
        monkeypatch.setattr(
            Trainer, name, lambda self, *a, _name=name, **kw: calls.append((f"Trainer.{_name}",))
        )
    return calls


def recipe_argv(recipe: str, tmp_path: Path, tokenizer) -> list[str]:
    out = tmp_path / "run"
    common = [arg.format(out=out) for arg in COMMON]
    if recipe == "clm":
        text = tmp_path / "corpus.txt"
        text.write_text("\n".join(LINES * 15) + "\n")
        model = write_tiny_lm(tmp_path / "lm")
        return ["--model_name_or_path", str(model), "--train_file", str(text), "--block_size", "16", *common]
    if recipe == "incremental":
        _, previous, old_train, new_train, validation = _deployed_bad_good_and_new_meh(tokenizer, tmp_path)
        return ["--previous_model", str(previous), "--train_file", str(new_train), "--validation_file",
                str(validation), "--old_train_file", str(old_train), "--replay_fraction", "0.1",
                "--teacher_logits_cache", str(tmp_path / "cache"), *common]  # fmt: skip
    model = write_tiny_model(tmp_path / "model", tokenizer)
    train = write_toy_tsv(tmp_path / "train.tsv", 48, seed=1)
    data = ["--train_file", str(train), "--text_column", "sentence", "--label_column", "sentiment",
            "--validation_split", "0.25"]  # fmt: skip
    role = "--teacher_name_or_path" if recipe == "distill" else "--model_name_or_path"
    extra = ["--student_layers", "0"] if recipe == "distill" else []
    return [role, str(model), *data, *extra, *common]


@pytest.mark.parametrize("recipe", ["classify", "distill", "clm", "incremental"])
def test_push_to_hub_uploads_the_checked_folder_not_the_run_folder(recipe, tmp_path, tiny_tokenizer, hub):
    load_recipe(recipe).main(recipe_argv(recipe, tmp_path, tiny_tokenizer))
    out = tmp_path / "run"
    assert (out / "training_args.bin").is_file() and (out / "run.json").is_file()  # there, and not uploaded
    assert [c[0] for c in hub] == ["create_repo", "upload_folder"]  # Trainer's own pushing never ran
    (_, repo_id, created), (_, uploaded, _) = hub
    assert repo_id == "me/tiny" and created["private"] is True
    assert {"config.json", "model.safetensors", "README.md"} <= uploaded
    assert not uploaded & {"training_args.bin", "run.json", "trainer_state.json", "optimizer.pt"}
    assert not [p for p in tmp_path.iterdir() if "_upload_" in p.name]  # the staged copy is removed


def test_push_to_hub_with_an_adapter_only_save_is_refused_before_training(tmp_path, tiny_tokenizer, hub):
    argv = [
        *recipe_argv("classify", tmp_path, tiny_tokenizer),
        "--use_lora",
        "true",
        "--merge_on_save",
        "false",
    ]
    with pytest.raises(UserInputError, match="merge_on_save: false saves the LoRA adapter only"):
        load_recipe("classify").main(argv)
    assert not (tmp_path / "run").exists() and hub == []
