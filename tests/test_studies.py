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
