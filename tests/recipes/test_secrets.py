"""No Hub token is ever written to disk by hfkit (issue 12): not from the environment, the config or the API."""

from __future__ import annotations

import pickle

import pytest

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.runtime import run_recipe
from tests.conftest import toy_dataset, write_tiny_model, write_toy_tsv
from tests.recipes.test_classify_recipe import load_recipe

FAKE = "hf_FakeTokenForTestsOnly0123456789abcdef"


def files_holding(folder, secret: str) -> list[str]:
    """Every file under `folder` whose bytes contain `secret`."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def classify_argv(tmp_path, tokenizer, *extra) -> list[str]:
    model = write_tiny_model(tmp_path / "tiny", tokenizer)
    train = write_toy_tsv(tmp_path / "train.tsv", 48, seed=1)
    return [
        "--model_name_or_path", str(model), "--train_file", str(train), "--text_column", "sentence",
        "--label_column", "sentiment", "--validation_split", "0.25", "--output_dir", str(tmp_path / "run"),
        "--use_cpu", "true", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
        "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--report_to", "none",
        "--keep_checkpoints", "true", *extra,
    ]  # fmt: skip


def test_recipe_run_with_token_in_environment_writes_it_nowhere(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE)
    load_recipe("classify").main(classify_argv(tmp_path, tiny_tokenizer))
    out = tmp_path / "run"
    assert (out / "checkpoint-2" / "training_args.bin").is_file() and (out / "run.json").is_file()
    assert files_holding(out, FAKE) == []


def test_token_given_to_the_api_stays_out_of_every_saved_file(tmp_path, tiny_bert, tiny_tokenizer):
    """training_args.bin (final and in every checkpoint) is Trainer's torch.save of the args: no token in it."""
    config = ClassifierConfig(
        output_dir=str(tmp_path / "api"), use_cpu=True, report_to="none", max_steps=2, save_strategy="steps",
        save_steps=1, eval_strategy="no", hub_token=FAKE, disable_tqdm=True,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=config,
        train_dataset=toy_dataset(tiny_tokenizer, 32),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "api" / "training_args.bin").is_file()
    assert files_holding(tmp_path / "api", FAKE) == []
    assert config.hub_token == FAKE  # still there for a push from this process
    assert pickle.loads(pickle.dumps(config)).hub_token is None


@pytest.mark.parametrize("where", ["command line", "yaml"])
def test_recipes_refuse_hub_token_as_a_setting(where, tmp_path, tiny_tokenizer, capsys):
    argv = classify_argv(tmp_path, tiny_tokenizer)
    if where == "yaml":
        config = tmp_path / "c.yaml"
        config.write_text(f"hub_token: {FAKE}\n")
        argv += ["--config", str(config)]
    else:
        argv += ["--hub_token", FAKE]
    with pytest.raises(SystemExit) as info:
        run_recipe(load_recipe("classify").main, argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "hub_token" in err and "HF_TOKEN" in err and "hf auth login" in err
    assert FAKE not in err  # the message never repeats the secret
    assert not (tmp_path / "run").exists()


def test_a_token_expanded_into_a_config_value_is_refused(tmp_path, tiny_tokenizer, capsys, monkeypatch):
    """`run_name: "run-${HF_TOKEN}"` would put the token in run.json, training_args.bin and the model card."""
    monkeypatch.setenv("HF_TOKEN", FAKE)
    config = tmp_path / "c.yaml"
    config.write_text('run_name: "run-${HF_TOKEN}"\n')
    argv = [*classify_argv(tmp_path, tiny_tokenizer), "--config", str(config)]
    capsys.readouterr()  # the tiny model's save progress
    with pytest.raises(SystemExit) as info:
        run_recipe(load_recipe("classify").main, argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "${HF_TOKEN}" in err and "'run_name'" in err and "hf auth login" in err
    assert FAKE not in err
    assert not (tmp_path / "run").exists()


def test_push_without_a_token_is_refused_before_training(tmp_path, tiny_tokenizer, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored `hf auth login` token either
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    with pytest.raises(SystemExit) as info:
        run_recipe(
            load_recipe("classify").main, classify_argv(tmp_path, tiny_tokenizer, "--push_to_hub", "true")
        )
    err = capsys.readouterr().err
    assert info.value.code == 2 and "push_to_hub" in err and "HF_TOKEN" in err
    assert not (tmp_path / "run" / "checkpoint-1").exists()
