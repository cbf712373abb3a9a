"""hfkit.hub: the upload folder's exact files, the model card (parsed back), save round trips, push_to_hub's Hub calls."""

from __future__ import annotations

import json
import logging

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

from hfkit.errors import UserInputError
from hfkit.hub import (
    CardInfo,
    collect_card_info,
    model_card,
    prepare_upload_folder,
    push_to_hub,
    save_model,
)
from hfkit.hub import upload as hub_upload
from hfkit.io import load_model
from tests.conftest import write_tiny_model

SECRET = "hf_" + "Abc123" * 6  # shaped like a Hub token

EVAL_REPORT = {
    "model": "sentence-transformers/all-MiniLM-L6-v2",
    "num_examples": 100,
    "labels": ["neg", "pos"],
    "metrics": {"loss": 0.3, "accuracy": 0.91, "f1": 0.9, "runtime": 1.2, "samples_per_second": 80.0},
    "confusion_matrix": [[45, 5], [4, 46]],
    "parameters": {"total": 12345, "trainable": 12345},
}
TRAINER_STATE = {
    "num_train_epochs": 3,
    "global_step": 30,
    "train_batch_size": 16,
    "log_history": [
        {"loss": 0.6, "learning_rate": 5e-5, "step": 10},
        {"loss": 0.5, "learning_rate": 2e-5, "step": 20},
        {"eval_loss": 0.35, "eval_accuracy": 0.88, "eval_runtime": 1.0, "epoch": 1.0, "step": 20},
        {"train_loss": 0.4, "train_runtime": 3.0, "step": 30},
    ],
}
LOADABLE = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def inputs() -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]]),
        "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 1, 0]]),
    }


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs()).logits


def write_json(path, data) -> None:
    path.write_text(json.dumps(data))


@pytest.fixture
def run_dir(tmp_path, tiny_tokenizer):
    """A classifier run folder as ClassifierTrainer leaves it: model, reports, and training state."""
    folder = write_tiny_model(tmp_path / "run", tiny_tokenizer)
    write_json(folder / "eval_report.json", EVAL_REPORT)
    write_json(folder / "trainer_state.json", TRAINER_STATE)
    (folder / "training_args.bin").write_bytes(b"\x80\x04 not for upload")
    (folder / "optimizer.pt").write_bytes(b"\x80\x04 not for upload")
    checkpoint = folder / "checkpoint-1"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (checkpoint / "rng_state.pth").write_bytes(b"x")
    return folder


def front_matter(path) -> dict:
    return ModelCard.load(path).data.to_dict()


def card_file(folder, text):
    """Write a card text to a file, for ModelCard.load."""
    path = folder / "card_check.md"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------- upload folder


def test_upload_folder_holds_exactly_the_loadable_files(run_dir, tmp_path):
    out = prepare_upload_folder(run_dir, tmp_path / "upload", repo_id="me/tiny")
    assert {p.name for p in out.iterdir()} == LOADABLE
    for name in LOADABLE - {"README.md"}:
        assert (out / name).read_bytes() == (run_dir / name).read_bytes()
    # What is uploaded loads on its own and computes what the trained model computes.
    original = AutoModelForSequenceClassification.from_pretrained(run_dir)
    uploaded = AutoModelForSequenceClassification.from_pretrained(out)
    torch.testing.assert_close(logits(uploaded), logits(original), rtol=0, atol=0)


def test_upload_folder_keeps_generation_lowrank_and_shard_index_but_no_training_files(run_dir, tmp_path):
    write_json(run_dir / "generation_config.json", {"max_new_tokens": 5})
    write_json(run_dir / "lowrank_config.json", {"rank": 4})
    write_json(run_dir / "model.safetensors.index.json", {"weight_map": {"w": "model.safetensors"}})
    (run_dir / "distill_projections.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes())
    (run_dir / "scheduler.pt").write_bytes(b"x")
    (run_dir / "pytorch_model.bin").write_bytes(b"x")
    (run_dir / ".env").write_text(f"HF_TOKEN={SECRET}")
    out = prepare_upload_folder(run_dir, tmp_path / "upload")
    assert {p.name for p in out.iterdir()} == LOADABLE | {
        "generation_config.json",
        "lowrank_config.json",
        "model.safetensors.index.json",
    }


def test_upload_folder_logs_what_it_leaves_out(run_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hfkit"):
        prepare_upload_folder(run_dir, tmp_path / "upload")
    assert (
        "checkpoint-1/, eval_report.json, optimizer.pt, trainer_state.json, training_args.bin" in caplog.text
    )


def test_no_safetensors_weights_is_refused_with_the_fix(run_dir, tmp_path):
    (run_dir / "model.safetensors").rename(run_dir / "pytorch_model.bin")
    with pytest.raises(
        ValueError, match=r"no safetensors weights .*found only pytorch_model.bin.*save_pretrained"
    ):
        prepare_upload_folder(run_dir, tmp_path / "upload")
    assert not (tmp_path / "upload").exists()


def test_missing_shard_config_or_tokenizer_is_refused(run_dir, tmp_path):
    write_json(
        run_dir / "model.safetensors.index.json", {"weight_map": {"a": "model-00002-of-00002.safetensors"}}
    )
    with pytest.raises(ValueError, match=r"missing: \['model-00002-of-00002.safetensors'\]"):
        prepare_upload_folder(run_dir, tmp_path / "a")
    (run_dir / "model.safetensors.index.json").unlink()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run_dir / name).unlink()
    with pytest.raises(ValueError, match=r"no tokenizer files .*tokenizer.save_pretrained"):
        prepare_upload_folder(run_dir, tmp_path / "b")
    (run_dir / "config.json").unlink()
    with pytest.raises(ValueError, match="has no config.json"):
        prepare_upload_folder(run_dir, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        prepare_upload_folder(tmp_path / "nowhere", tmp_path / "d")
    with pytest.raises(ValueError, match="choose a separate folder"):
        prepare_upload_folder(run_dir, run_dir)


def test_out_folder_is_replaced_only_when_asked_and_only_if_it_is_an_upload_folder(run_dir, tmp_path):
    out = prepare_upload_folder(run_dir, tmp_path / "upload")
    (out / "model-00009-of-00009.safetensors").write_bytes(b"stale shard of another model")
    with pytest.raises(FileExistsError, match="not empty.*overwrite=True"):
        prepare_upload_folder(run_dir, out)
    prepare_upload_folder(run_dir, out, overwrite=True)
    assert {p.name for p in out.iterdir()} == LOADABLE  # the stale shard is gone

    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes.txt.*refusing to clear it"):
        prepare_upload_folder(run_dir, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_files_holding_a_token_are_refused_without_echoing_it(run_dir, tmp_path):
    config = json.loads((run_dir / "tokenizer_config.json").read_text())
    write_json(run_dir / "tokenizer_config.json", {**config, "token": "some-secret-value"})
    with pytest.raises(ValueError, match=r"tokenizer_config.json sets \['token'\]") as err:
        prepare_upload_folder(run_dir, tmp_path / "a")
    assert "some-secret-value" not in str(err.value)

    write_json(run_dir / "tokenizer_config.json", config)
    model_config = json.loads((run_dir / "config.json").read_text())
    write_json(run_dir / "config.json", {**model_config, "note": f"pushed with {SECRET}"})
    with pytest.raises(ValueError, match=r"config.json contains what looks like a Hugging Face token") as err:
        prepare_upload_folder(run_dir, tmp_path / "b")
    assert SECRET not in str(err.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------------- card


def test_card_of_a_fine_tuned_classifier(run_dir, tmp_path):
    info = CardInfo(license="apache-2.0", datasets=["stanfordnlp/sst2"], language=["en"])
    out = prepare_upload_folder(run_dir, tmp_path / "upload", info, repo_id="me/tiny-sst2")
    meta = front_matter(out / "README.md")
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == ["hfkit", "text-classification"]
    assert meta["datasets"] == ["stanfordnlp/sst2"] and meta["language"] == ["en"]
    assert meta["metrics"] == ["accuracy", "f1"]  # no loss, no timings
    (index,) = meta["model-index"]
    assert index["name"] == "tiny-sst2"
    (result,) = index["results"]
    assert result["dataset"]["type"] == "stanfordnlp/sst2"
    assert result["metrics"] == [{"type": "accuracy", "value": 0.91}, {"type": "f1", "value": 0.9}]

    text = (out / "README.md").read_text()
    for expected in (
        "# tiny-sst2",
        "| Training | fine-tuning |",
        "| Labels | neg, pos |",
        "| Parameters | 12,345 |",
        "on 100 held-out examples",
        "| accuracy | 91.00% |",
        "| loss | 0.3 |",
        "| epochs | 3 |",
        "| optimizer steps | 30 |",
        "| batch size per device | 16 |",
        "| final training loss | 0.4 |",
        "- [stanfordnlp/sst2](https://huggingface.co/datasets/stanfordnlp/sst2)",
        'model = AutoModelForSequenceClassification.from_pretrained("me/tiny-sst2")',
        'tokenizer = AutoTokenizer.from_pretrained("me/tiny-sst2")',
    ):
        assert expected in text, expected
    assert "runtime" not in text and "BitsAndBytesConfig" not in text
    assert "learning rate" not in text  # the logged schedule is not the configured value: not shown


def test_trainer_state_metrics_are_used_without_eval_report(run_dir):
    (run_dir / "eval_report.json").unlink()
    info = collect_card_info(run_dir)
    assert info.metrics == {"loss": 0.35, "accuracy": 0.88}
    assert info.method == "fine-tuning" and info.base_model is None
    assert not any("learning rate" in k for k in info.hyperparameters)


def test_explicit_card_info_wins_over_the_folder(run_dir):
    info = collect_card_info(
        run_dir,
        CardInfo(
            base_model="org/base", metrics='{"accuracy": 0.5}', hyperparameters={"epochs": 7, "seed": 1}
        ),
    )
    assert info.base_model == "org/base" and info.metrics == {"accuracy": 0.5}
    # Explicit hyper-parameters override recorded ones; the others stay.
    assert info.hyperparameters["epochs"] == 7 and info.hyperparameters["seed"] == 1
    assert info.hyperparameters["optimizer steps"] == 30


def test_bad_card_info_json_is_a_clear_error():
    with pytest.raises(ValueError, match="metrics must be a JSON object"):
        CardInfo(metrics="{accuracy: 0.9")
    with pytest.raises(ValueError, match="hyperparameters must be a mapping"):
        CardInfo(hyperparameters="[1, 2]")


def test_local_paths_stay_out_of_the_card(run_dir):
    write_json(run_dir / "eval_report.json", {**EVAL_REPORT, "model": "/home/alice/private/minilm-run"})
    text = str(
        model_card(run_dir, CardInfo(datasets=["/home/alice/data/train.tsv"], teacher="/home/alice/t"))
    )
    assert "/home/alice" not in text
    assert "base_model" not in text.split("---")[1] and "datasets" not in text.split("---")[1]
    assert "| Base model | `minilm-run` (local) |" in text and "- `train.tsv` (local)" in text
    assert "| License | not set |" in text
    assert 'from_pretrained("your-username/run")' in text  # no repo id yet: a placeholder


def test_card_of_a_distilled_student(run_dir, tmp_path):
    write_json(
        run_dir / "distill_report.json",
        {
            "validation_examples": 100,
            "models": [
                {"name": "teacher", "parameters": 22700000, "size_mb": 90.9, "accuracy": 0.92, "f1": 0.92,
                 "latency_ms": 40.0, "speedup": 1.0},
                {"name": "student", "parameters": 17400000, "size_mb": 69.6, "accuracy": 0.9, "f1": 0.9,
                 "latency_ms": 20.0, "speedup": 2.0},
            ],
        },
    )  # fmt: skip
    (run_dir / "distill_projections.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes())
    info = CardInfo(teacher="my-org/minilm-sst2", temperature=2.0, alpha=0.5)
    out = prepare_upload_folder(run_dir, tmp_path / "upload", info, repo_id="me/student")
    assert {p.name for p in out.iterdir()} == LOADABLE
    meta = front_matter(out / "README.md")
    assert meta["tags"] == ["hfkit", "text-classification", "distillation"]
    text = (out / "README.md").read_text()
    assert (
        "| Training | distillation from teacher [my-org/minilm-sst2](https://huggingface.co/my-org/minilm-sst2) "
        "(temperature 2.0, alpha 0.5) |" in text
    )
    assert "| temperature | 2 |" in text and "| alpha | 0.5 |" in text
    assert "Teacher vs student on 100 validation examples" in text
    assert "| student | 17,400,000 | 69.6 | 90.00% | 90.00% | 20 | 2.00x |" in text


def test_card_of_an_8bit_model_and_its_reload(tmp_path, tiny_tokenizer):
    source = write_tiny_model(tmp_path / "fp32", tiny_tokenizer)
    quantization = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["classifier", "pooler"])
    model = AutoModelForSequenceClassification.from_pretrained(source, quantization_config=quantization)
    before = logits(model)
    folder = save_model(model, tiny_tokenizer, tmp_path / "int8", CardInfo(method="fine-tuning"))

    reloaded, tokenizer = load_model(folder)
    assert type(reloaded.bert.encoder.layer[0].attention.self.query).__name__ == "Linear8bitLt"
    torch.testing.assert_close(logits(reloaded), before, rtol=0, atol=0)
    assert tokenizer.get_vocab() == tiny_tokenizer.get_vocab()

    text = (folder / "README.md").read_text()
    assert "| Compression | 8-bit quantization (bitsandbytes LLM.int8) |" in text
    assert "BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=['classifier', 'pooler'])" in text
    assert "quantization_config=quantization_config)" in text
    assert front_matter(folder / "README.md")["tags"] == [
        "hfkit", "text-classification", "quantization", "8-bit", "bitsandbytes",
    ]  # fmt: skip


def test_card_of_a_4bit_folder_spells_out_its_settings(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "bitsandbytes",
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    }
    write_json(run_dir / "config.json", config)
    text = str(model_card(run_dir))
    assert "4-bit quantization (bitsandbytes nf4)" in text
    assert (
        "BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True)"
        in text
    )


def test_low_rank_folder_card_and_loader(run_dir, tiny_tokenizer):
    from hfkit.compress.lowrank import LowRankArguments, factorize_model, save_lowrank

    model = AutoModelForSequenceClassification.from_pretrained(run_dir)
    factorize_model(model, LowRankArguments(rank=4))
    save_lowrank(model, tiny_tokenizer, run_dir)
    text = str(model_card(run_dir, repo_id="me/lowrank"))
    assert "| Compression | low-rank factorization |" in text
    assert "from hfkit.io import load_model" in text
    assert 'model, tokenizer = load_model(snapshot_download("me/lowrank"))' in text
    assert "low-rank" in front_matter(card_file(run_dir, text))["tags"]

    loaded, tokenizer = load_model(run_dir)
    assert type(loaded.bert.encoder.layer[0].attention.self.query).__name__ == "LowRankLinear"
    torch.testing.assert_close(logits(loaded.eval()), logits(model.eval()), rtol=0, atol=0)
    assert tokenizer.convert_tokens_to_ids("good") == 5


def test_card_of_a_pruned_model(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    write_json(run_dir / "config.json", {**config, "pruned_heads": {"0": [1]}})
    text = str(model_card(run_dir))
    assert "| Compression | pruning (attention heads) |" in text
    assert "pruning" in front_matter(card_file(run_dir, text))["tags"]


# ----------------------------------------------------------------------------------------------- save / load


def test_save_and_load_a_classifier_round_trip_without_distill_projections(
    tmp_path, tiny_bert, tiny_tokenizer
):
    tiny_bert.add_module("distill_projections", torch.nn.ModuleList([torch.nn.Linear(32, 64)]))
    folder = save_model(tiny_bert, tiny_tokenizer, tmp_path / "saved")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "classifier.weight" in keys and not any(k.startswith("distill_projections") for k in keys)
    assert (folder / "README.md").is_file()

    model, tokenizer = load_model(folder)
    assert type(model) is BertForSequenceClassification and model.config.id2label == {0: "bad", 1: "good"}
    torch.testing.assert_close(logits(model), logits(tiny_bert), rtol=0, atol=0)
    assert tokenizer("good bad")["input_ids"] == tiny_tokenizer("good bad")["input_ids"]


def test_save_and_load_a_causal_lm(tmp_path, tiny_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    lm = LlamaForCausalLM(config)
    folder = save_model(
        lm, tiny_tokenizer, tmp_path / "lm", CardInfo(base_model="HuggingFaceTB/SmolLM2-135M")
    )
    model, _ = load_model(folder)
    assert type(model) is LlamaForCausalLM
    torch.testing.assert_close(logits(model), logits(lm), rtol=0, atol=0)

    meta = front_matter(folder / "README.md")
    assert meta["pipeline_tag"] == "text-generation" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M"
    text = (folder / "README.md").read_text()
    assert "AutoModelForCausalLM.from_pretrained" in text and "model.generate(" in text
    assert "| Training | not recorded |" in text


def test_save_model_refuses_a_model_with_adapters(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="merge_and_unload"):
        save_model(torch.nn.Linear(2, 2), tiny_tokenizer, tmp_path / "x")


# ----------------------------------------------------------------------------------------------- push


class FakeHfApi:
    """Records what push_to_hub asks of huggingface_hub, in place of the unreachable Hub."""

    calls: list = []

    def __init__(self, token=None):
        FakeHfApi.calls.append(("HfApi", {"token": token}))

    def create_repo(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        FakeHfApi.calls.append(("upload_folder", kwargs))
        return "commit-info"


@pytest.fixture
def fake_hub(monkeypatch):
    FakeHfApi.calls = []
    monkeypatch.setattr(hub_upload, "HfApi", FakeHfApi)
    return FakeHfApi.calls


def test_push_to_hub_creates_the_repo_then_uploads_the_folder(run_dir, tmp_path, fake_hub, caplog, capsys):
    out = prepare_upload_folder(run_dir, tmp_path / "upload", repo_id="me/tiny")
    with caplog.at_level(logging.DEBUG):
        result = push_to_hub(out, "me/tiny", token=SECRET, private=False, commit_message="first model")
    assert result == "commit-info"
    assert fake_hub == [
        ("HfApi", {"token": SECRET}),
        ("create_repo", {"repo_id": "me/tiny", "private": False, "exist_ok": True}),
        ("upload_folder", {"repo_id": "me/tiny", "folder_path": str(out), "commit_message": "first model",
                           "allow_patterns": hub_upload.UPLOAD_PATTERNS,
                           "ignore_patterns": ["distill_projections.safetensors"]}),
    ]  # fmt: skip
    assert {"*.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(hub_upload.UPLOAD_PATTERNS)
    captured = capsys.readouterr()
    assert "uploaded" in caplog.text and SECRET not in caplog.text + captured.out + captured.err
    assert SECRET not in "".join(p.read_text(errors="ignore") for p in out.iterdir())


def test_push_to_hub_defaults_to_private_and_the_stored_token(run_dir, tmp_path, fake_hub, monkeypatch):
    monkeypatch.setattr(hub_upload.huggingface_hub, "get_token", lambda: SECRET)  # as after `hf auth login`
    out = prepare_upload_folder(run_dir, tmp_path / "upload")
    push_to_hub(out, "me/tiny")
    assert fake_hub[0] == ("HfApi", {"token": None})  # huggingface_hub resolves HF_TOKEN / the login itself
    assert fake_hub[1][1]["private"] is True
    assert fake_hub[2][1]["commit_message"] == "Upload model with hfkit"


def test_token_none_means_hf_token_env_to_huggingface_hub(monkeypatch):
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert huggingface_hub.get_token() == SECRET


def test_push_to_hub_checks_its_inputs_before_any_hub_call(run_dir, tmp_path, fake_hub):
    with pytest.raises(ValueError, match="has no README.md: build the folder with prepare_upload_folder"):
        push_to_hub(run_dir, "me/tiny")
    out = prepare_upload_folder(run_dir, tmp_path / "upload")
    with pytest.raises(ValueError, match="no namespace: give the full id, e.g. your-username/tiny"):
        push_to_hub(out, "tiny")
    with pytest.raises(ValueError, match="invalid repo_id 'me/bad--name'"):
        push_to_hub(out, "me/bad--name")
    assert fake_hub == []


def test_push_without_any_token_fails_up_front(run_dir, tmp_path, fake_hub, monkeypatch):
    monkeypatch.setattr(hub_upload.huggingface_hub, "get_token", lambda: None)
    out = prepare_upload_folder(run_dir, tmp_path / "upload")
    with pytest.raises(UserInputError, match="no Hugging Face token: set the HF_TOKEN environment variable"):
        push_to_hub(out, "me/tiny")
    assert fake_hub == []


# ----------------------------------------------------------------------------------------------- recorded facts


def write_run_json(folder, config: dict, files: dict[str, str]) -> None:
    """A run.json as hfkit.runtime.start_run writes it: every setting, and each local data file's path."""
    data_files = {name: {"path": path, "sha256": "0" * 64} for name, path in files.items()}
    write_json(folder / "run.json", {"hfkit_version": "x", "config": config, "data_files": data_files})


SETTINGS = {
    "teacher_name_or_path": "my-org/minilm-sst2", "student_layers": [0, 1], "text_column": "text_a",
    "learning_rate": 1e-4, "num_train_epochs": 2.0, "per_device_train_batch_size": 16, "temperature": 2.0,
    "alpha": 0.5, "max_steps": -1, "warmup_ratio": 0.0,
}  # fmt: skip


def test_card_says_what_the_run_recorded(run_dir, tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("label\ttext_a\n" + "1\tgreat fun\n" * 500)
    validation = tmp_path / "validation.tsv"
    validation.write_text("label\ttext_a\n1\ta gripping thriller\n0\tthe jokes fall flat\n")
    files = {"train_file": str(train), "validation_file": str(validation)}
    write_run_json(run_dir, {**SETTINGS, **files}, files)

    card = model_card(run_dir, repo_id="me/student")
    card.save(tmp_path / "README.md")
    meta = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["model-index"][0]["results"][0]["metrics"] == [
        {"type": "accuracy", "value": 0.91},
        {"type": "f1", "value": 0.9},
    ]
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    text = card.content
    for expected in (
        "| learning rate | 0.0001 |",  # configured; the logged schedule peaked at 5e-05
        "| epochs | 2 |",
        "| temperature | 2 |",
        "| alpha | 0.5 |",
        "- train: `train.tsv` (local), 500 rows, 6.0 kB",
        "- validation: `validation.tsv` (local), 2 rows, 0.1 kB",
        "| Student | layers 0, 1 kept (2 layers) of [my-org/minilm-sst2](https://huggingface.co/my-org/minilm-sst2) |",
        "distillation from teacher [my-org/minilm-sst2]",
        "tokenizer(['a gripping thriller', 'the jokes fall flat'], padding=True",
    ):
        assert expected in text, expected
    assert "5e-05" not in text and "movie" not in text and str(tmp_path) not in text


def test_card_names_every_teacher_of_a_multi_teacher_run(run_dir, tmp_path):
    settings = {
        **SETTINGS,
        "teacher_name_or_path": None,
        "teachers": ["my-org/minilm-sst2", "/data/mpnet_sst2"],
    }
    write_run_json(run_dir, settings, {})
    text = model_card(run_dir, repo_id="me/student").content
    # The student's layers came from the first teacher; a local teacher path is reduced to its name.
    assert "of [my-org/minilm-sst2](https://huggingface.co/my-org/minilm-sst2) |" in text
    assert (
        "distillation from teachers [my-org/minilm-sst2](https://huggingface.co/my-org/minilm-sst2), " in text
    )
    assert "`mpnet_sst2` (local)" in text and "/data/" not in text


def test_card_of_a_compressed_stage_reads_the_compression_report(tmp_path, tiny_tokenizer):
    out = tmp_path / "compressed"
    folder = write_tiny_model(out / "trim_vocab-int8", tiny_tokenizer)
    row = {"nonzero_parameters": 0, "memory_mb": 1.0, "f1": 0.88, "extra": {}}
    models = [
        {**row, "name": "student", "chain": "", "folder": "/x/student", "parameters": 17390594, "size_mb": 69.6,
         "accuracy": 0.9, "latency_ms": 60.0},
        {**row, "name": "trim_vocab", "chain": "trim_vocab", "folder": str(out / "trim_vocab"),
         "parameters": 10114946, "size_mb": 40.5, "accuracy": 0.9, "latency_ms": 58.0,
         "extra": {"vocab_size": 11575, "original_vocab_size": 30522, "oov_row_fraction": 0.0,
                   "oov_token_fraction": 0.0}},
        {**row, "name": "trim_vocab-int8", "chain": "trim_vocab>int8", "folder": str(folder),
         "parameters": 10114946, "size_mb": 24.6, "accuracy": 0.899, "f1": 0.87, "latency_ms": 50.0},
    ]  # fmt: skip
    settings = {"CompressArguments": {"model_name_or_path": str(tmp_path / "student")}}
    write_json(out / "compression_report.json", {"data": "validation.tsv", "validation_examples": 1000,
                                                 "settings": settings, "models": models})  # fmt: skip
    # The compressed student's own run: where the stage's data and usage text come from.
    student = write_tiny_model(tmp_path / "student", tiny_tokenizer)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood w1 w2\tpos\nbad w3\tneg\n")
    files = {"train_file": str(tmp_path / "train.tsv")}
    write_run_json(student, {**SETTINGS, "text_column": "sentence", "validation_split": 0.2, **files}, files)

    card = model_card(folder, repo_id="me/student-int8")
    results = card.data.to_dict()["model-index"][0]["results"][0]
    assert results["metrics"] == [{"type": "accuracy", "value": 0.899}, {"type": "f1", "value": 0.87}]
    text = card.content
    for expected in (
        "| Compression | trim_vocab > int8 |",
        "Metrics of this model on 1,000 held-out examples",
        "| accuracy | 89.90% |",
        "| trim_vocab | 10,114,946 | 40.5 | 90.00% | +0.00 | 58.0 | 1.03x | vocabulary 30,522 -> 11,575",
        "| trim_vocab>int8 | 10,114,946 | 24.6 | 89.90% | -0.10 | 50.0 | 1.20x |",
        "tokenizer(['good w1 w2', 'bad w3'], padding=True",
        "- train: `train.tsv` (local), 2 rows",
        "- validation: held out from the training data (validation_split 0.2)",
        "| Base model | `student` (local) |",
    ):
        assert expected in text, expected
    assert "No evaluation recorded" not in text
    assert "temperature" not in text and "alpha" not in text  # a compressed model was not distilled here
    assert "vocabulary-trimming" in card.data.tags
