"""The study runner (benchmarks/studies.py): a finished run made with other settings is not taken as current."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from tests.conftest import REPO


def _studies(monkeypatch):
    spec = importlib.util.spec_from_file_location("studies", os.path.join(REPO, "benchmarks", "studies.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "studies", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_run_made_with_other_settings_is_refused_and_a_legacy_run_is_kept(tmp_path, monkeypatch):
    studies = _studies(monkeypatch)
    (tmp_path / "recipes" / "configs" / "classify").mkdir(parents=True)
    config = tmp_path / "recipes" / "configs" / "classify" / "x.yaml"
    config.write_text("learning_rate: 1.0e-3\n")
    monkeypatch.setattr(studies, "REPO", str(tmp_path))
    cell = studies.Cell("ce", "a cell", "classify", "classify/x.yaml", ["--alpha", "0.5"])
    runs = tmp_path / "runs"
    out = runs / "ce_s0"
    out.mkdir(parents=True)
    record = {"command": [], "minutes": 1.0, "threads": 1, "settings_sha256": studies.settings_digest(cell)}
    (out / "study_run.json").write_text(json.dumps(record))
    studies.check_settings(str(runs), [cell], [0, 1])  # same settings; seed 1 not run yet: nothing to say

    config.write_text("learning_rate: 2.0e-3\n")  # the config changed after the run
    with pytest.raises(SystemExit, match=r"1 finished run\(s\) were made with other settings.*ce_s0"):
        studies.check_settings(str(runs), [cell], [0])
    config.write_text("learning_rate: 1.0e-3  # a comment is not a setting\n")
    studies.check_settings(str(runs), [cell], [0])
    changed = studies.Cell("ce", "a cell", "classify", "classify/x.yaml", ["--alpha", "0.9"])
    with pytest.raises(SystemExit, match="other settings"):  # so did the overrides
        studies.check_settings(str(runs), [changed], [0])
    # A run recorded before the digest existed carries none: it is taken as it is.
    (out / "study_run.json").write_text(json.dumps({"command": [], "minutes": 1.0, "threads": 1}))
    studies.check_settings(str(runs), [changed], [0])


def test_paired_tests_pair_seed_by_seed_and_count_each_row_once(monkeypatch):
    import numpy as np

    studies = _studies(monkeypatch)
    gold = np.zeros(10, dtype=int)
    # Seed 0: the cell gets rows 0-8 right, the baseline rows 0-1 and 9 (7 vs 1 discordant rows);
    # seed 1: both get rows 0-4 right (no discordant row).
    got = {0: (np.array([0] * 9 + [1]), gold), 1: (np.array([0] * 5 + [1] * 5), gold)}
    base = {
        0: (np.array([0, 0] + [1] * 7 + [0]), gold),
        1: (np.array([0] * 5 + [1] * 5), gold),
        2: (gold, gold),
    }
    tests = studies.paired_tests(got, base)
    assert tests["seeds"] == [0, 1]  # seed 2 has no partner
    assert [(m["b_only"], m["a_only"]) for m in tests["mcnemar"]] == [(7, 1), (0, 0)]
    assert (
        tests["mcnemar"][0]["p_value"] == pytest.approx(2 * 9 / 256) and tests["mcnemar"][1]["p_value"] == 1.0
    )
    # accuracies: cell 0.9 / 0.5, baseline 0.3 / 0.5 -> differences 0.6 and 0: mean +30 points
    assert tests["difference"] == pytest.approx(30.0)
    assert tests["t_test"]["mean_difference"] == pytest.approx(0.3) and tests["t_test"]["df"] == 1
    # the bootstrap sees 10 rows (each averaged over the 2 seeds), not 20
    assert tests["bootstrap"]["difference"] == pytest.approx(0.3)
    assert studies.paired_tests(got, {5: base[0]}) is None
    assert studies.paired_text(None) == ("-", "-", "-", "-")
    difference, per_seed, _, _ = studies.paired_text(tests)
    assert difference == "+30.00" and per_seed.startswith("7/1 p 0.07; 0/0 p 1")


def test_picked_on_validation_names_the_epoch_kept(tmp_path, monkeypatch):
    studies = _studies(monkeypatch)
    (tmp_path / "recipes" / "configs" / "classify").mkdir(parents=True)
    (tmp_path / "recipes" / "configs" / "classify" / "x.yaml").write_text("num_train_epochs: 1\n")
    monkeypatch.setattr(studies, "REPO", str(tmp_path))
    one = studies.Cell("a", "", "classify", "classify/x.yaml", ["--keep_layers", "0", "2"])
    two = studies.Cell(
        "b", "", "classify", "classify/x.yaml", ["--num_train_epochs", "2", "--early_stopping_patience", "2"]
    )
    assert studies.picked_on_validation(one) == ""
    assert studies.picked_on_validation(two) == "epoch kept"
    assert studies.cell_settings(one)["keep_layers"] == ["0", "2"]


def test_runs_without_a_settings_digest_are_named(tmp_path, monkeypatch, capsys):
    studies = _studies(monkeypatch)
    (tmp_path / "recipes" / "configs" / "classify").mkdir(parents=True)
    (tmp_path / "recipes" / "configs" / "classify" / "x.yaml").write_text("learning_rate: 1.0e-3\n")
    monkeypatch.setattr(studies, "REPO", str(tmp_path))
    cell = studies.Cell("ce", "a cell", "classify", "classify/x.yaml", [])
    runs = tmp_path / "runs"
    for seed, record in ((0, {"settings_sha256": studies.settings_digest(cell)}), (1, {})):
        (runs / f"ce_s{seed}").mkdir(parents=True)
        (runs / f"ce_s{seed}" / "study_run.json").write_text(json.dumps({"command": [], **record}))
    assert studies.legacy_runs(str(runs), [cell], [0, 1, 2]) == ["ce_s1"]
    assert "`ce_s1`" in studies.legacy_note(str(runs), [cell], [0, 1])[-1]
    assert studies.legacy_note(str(runs), [cell], [0]) == []
    studies.check_settings(str(runs), [cell], [0, 1])
    assert "1 finished run(s) carry no settings digest" in capsys.readouterr().out
