"""Checkpoints are complete or ignored: atomic saves, the newest complete one is resumed, a full disk is survived."""

from __future__ import annotations

import errno
import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.errors import MissingInputError, UserInputError
from hfkit.runtime import checkpoint_to_resume
from hfkit.trainers.checkpoints import checkpoint_problem, find_resumable_checkpoint
from tests.conftest import tiny_bert_config, toy_dataset


def make_trainer(tmp_path, tokenizer, max_steps=3, eval_dataset=None, **overrides) -> ClassifierTrainer:
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(tokenizer, id2label={0: "bad", 1: "good"}))
    args = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", disable_tqdm=True, learning_rate=1e-3,
        per_device_train_batch_size=8, max_steps=max_steps, eval_strategy="no", save_strategy="steps",
        save_steps=1, logging_steps=1, seed=0, warmup_steps=0, save_total_limit=None,
    )  # fmt: skip
    args.update(overrides)
    return ClassifierTrainer(
        model=model, args=ClassifierConfig(**args), train_dataset=toy_dataset(tokenizer, 64, seed=1),
        eval_dataset=eval_dataset, processing_class=tokenizer,
    )  # fmt: skip


@pytest.fixture
def run3(tmp_path, tiny_tokenizer):
    """An output_dir with checkpoint-1..3 of a finished 3-step run."""
    trainer = make_trainer(tmp_path, tiny_tokenizer)
    trainer.train()
    return tmp_path / "out", trainer


def test_saves_are_complete_and_leave_no_temporary_folder(run3):
    out, trainer = run3
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("checkpoint", "_"))) == [
        "checkpoint-1", "checkpoint-2", "checkpoint-3",
    ]  # fmt: skip
    for folder in out.glob("checkpoint-*"):
        assert checkpoint_problem(folder, trainer.args) is None


def test_checkpoint_is_written_elsewhere_and_renamed_into_place(tmp_path, tiny_tokenizer, monkeypatch):
    """While the optimizer is written, checkpoint-N does not exist yet: a kill then cannot leave a partial one."""
    seen = []
    real_save = torch.save

    def spy(obj, path, *args, **kwargs):
        path = str(path)
        if path.endswith("optimizer.pt"):
            step = path.split("checkpoint-")[-1].split("/")[0]
            seen.append(((tmp_path / "out" / f"checkpoint-{step}").exists(), "_tmp-checkpoint" in path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    make_trainer(tmp_path, tiny_tokenizer, max_steps=2).train()
    assert seen == [(False, True), (False, True)]
    assert (tmp_path / "out" / "checkpoint-2" / "optimizer.pt").is_file()


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("only_config", "no trainer_state.json"),
        ("no_state", "no trainer_state.json"),
        ("bad_state", "trainer_state.json is unreadable"),
        ("cut_weights", "model.safetensors: it is truncated"),
        ("empty_weights", "model.safetensors: it is empty"),
        ("cut_optimizer", "optimizer.pt is truncated"),
        ("no_rng", "no rng_state.pth"),
        ("nan_weights", "non-finite values"),
        ("nan_loss", "logged training loss was nan"),
    ],
)
def test_resume_skips_a_damaged_newest_checkpoint_and_says_why(run3, damage, reason, caplog):
    out, trainer = run3
    newest = out / "checkpoint-3"
    if damage == "only_config":  # what a kill mid-save left before saves were atomic (issue 12)
        for f in newest.iterdir():
            if f.name != "config.json":
                f.unlink()
    elif damage == "no_state":
        (newest / "trainer_state.json").unlink()
    elif damage == "bad_state":
        (newest / "trainer_state.json").write_text('{"global_step": 3, "log_hi')
    elif damage in ("cut_weights", "empty_weights"):
        weights = newest / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) - 100] if damage == "cut_weights" else b"")
    elif damage == "cut_optimizer":
        opt = newest / "optimizer.pt"
        opt.write_bytes(opt.read_bytes()[:-200])
    elif damage == "no_rng":
        (newest / "rng_state.pth").unlink()
    elif damage == "nan_weights":
        tensors = load_file(newest / "model.safetensors")
        name = next(iter(tensors))
        tensors[name][0] = float("nan")
        save_file(tensors, newest / "model.safetensors", metadata={"format": "pt"})
    elif damage == "nan_loss":
        state = json.loads((newest / "trainer_state.json").read_text())
        state["log_history"][-1]["loss"] = float("nan")
        (newest / "trainer_state.json").write_text(json.dumps(state))

    assert reason in checkpoint_problem(newest, trainer.args)
    found, skipped = find_resumable_checkpoint(out, trainer.args)
    assert found == str(out / "checkpoint-2")
    assert len(skipped) == 1 and skipped[0][0] == str(newest) and reason in skipped[0][1]
    with caplog.at_level(logging.INFO, logger="hfkit"):
        assert checkpoint_to_resume(trainer.args) == str(out / "checkpoint-2")
    assert f"skipping {newest}: " in caplog.text and reason in caplog.text
    assert "resuming from" in caplog.text and "newest complete checkpoint" in caplog.text


def test_rerun_after_interrupted_save_finishes_like_an_uninterrupted_run(tmp_path, tiny_tokenizer):
    """The reported crash: checkpoint-N with only config.json. The rerun resumes from N-1 and ends identical
    to an uninterrupted run (a plain get_last_checkpoint picked checkpoint-N and crashed on every rerun)."""
    reference = make_trainer(tmp_path / "ref", tiny_tokenizer, max_steps=4)
    reference.train()
    make_trainer(tmp_path, tiny_tokenizer, max_steps=4).train()
    shutil.rmtree(tmp_path / "out" / "checkpoint-4")  # killed while saving step 3: nothing of step 4 yet
    newest = tmp_path / "out" / "checkpoint-3"
    for f in newest.iterdir():
        if f.name != "config.json":
            f.unlink()
    (tmp_path / "out" / "_tmp-checkpoint-4").mkdir()  # a temporary folder left by a kill
    rerun = make_trainer(tmp_path, tiny_tokenizer, max_steps=4)
    rerun.train(resume_from_checkpoint=checkpoint_to_resume(rerun.args))
    assert not (tmp_path / "out" / "_tmp-checkpoint-4").exists()
    assert checkpoint_problem(newest, rerun.args) is None  # rewritten whole
    for (name, a), b in zip(
        reference.model.state_dict().items(), rerun.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, tiny_tokenizer, monkeypatch):
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        if "checkpoint-2" in str(path) and str(path).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    trainer = make_trainer(tmp_path, tiny_tokenizer, max_steps=3)
    with pytest.raises(UserInputError, match="no space left .* checkpoint-2.*rerun the same command"):
        trainer.train()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-1"]
    assert checkpoint_problem(out / "checkpoint-1", trainer.args) is None

    monkeypatch.setattr(torch, "save", real_save)
    rerun = make_trainer(tmp_path, tiny_tokenizer, max_steps=3)
    assert checkpoint_to_resume(rerun.args) == str(out / "checkpoint-1")
    rerun.train(resume_from_checkpoint=str(out / "checkpoint-1"))
    assert rerun.state.global_step == 3


def test_rotation_and_best_checkpoint_point_at_the_final_folders(tmp_path, tiny_tokenizer):
    """save_total_limit and load_best_model_at_end work on the renamed folders, not the temporary ones."""
    trainer = make_trainer(
        tmp_path, tiny_tokenizer, max_steps=4, save_total_limit=2, eval_strategy="steps", eval_steps=1,
        load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False,
        eval_dataset=toy_dataset(tiny_tokenizer, 16, seed=2),
    )  # fmt: skip
    trainer.train()
    out = tmp_path / "out"
    kept = sorted(p.name for p in out.iterdir() if "checkpoint" in p.name)
    assert len(kept) <= 2 and "checkpoint-4" in kept
    best = trainer.state.best_model_checkpoint
    assert best is not None and "_tmp" not in best and (out / best.split("/")[-1]).is_dir()
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert "_tmp" not in (state["best_model_checkpoint"] or "")


def test_resume_from_a_path_that_does_not_exist_or_is_incomplete(run3):
    out, trainer = run3
    trainer.args.resume_from_checkpoint = str(out / "checkpoint-9")
    with pytest.raises(MissingInputError, match="checkpoint-9.*is not a folder"):
        checkpoint_to_resume(trainer.args)
    (out / "checkpoint-2" / "optimizer.pt").unlink()
    trainer.args.resume_from_checkpoint = str(out / "checkpoint-2")
    with pytest.raises(UserInputError, match="cannot resume from .*checkpoint-2: no optimizer.pt"):
        checkpoint_to_resume(trainer.args)


def test_trainer_resume_true_takes_the_newest_complete_checkpoint(run3, tiny_tokenizer, tmp_path):
    out, _ = run3
    shutil.rmtree(out / "checkpoint-3")
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "config.json").write_text("{}")
    trainer = make_trainer(tmp_path, tiny_tokenizer, max_steps=3)
    trainer.train(resume_from_checkpoint=True)  # plain Trainer would pick checkpoint-3 and crash
    assert trainer.state.global_step == 3
