"""The `hfkit` command: help, shipped configs by name, the same code as recipes/*.py, a pip-installable package."""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib
from transformers import TrainingArguments

from hfkit.cli import COMMANDS, main
from hfkit.parsing import SHIPPED_CONFIGS, ConfigError, load_yaml_config, resolve_config, shipped_configs
from hfkit.reference import config_reference
from tests.conftest import REPO

TRAINING_ARGUMENT_NAMES = {f.name for f in dataclasses.fields(TrainingArguments)}


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS) and "configs" in out
    assert set(COMMANDS) == {p.stem for p in (REPO / "hfkit" / "recipes").glob("*.py")} - {"__init__"}


def test_unknown_command_is_one_message_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["distil"])
    assert exit_.value.code == 2 and "did you mean: distill" in capsys.readouterr().err


def test_import_hfkit_and_top_level_help_load_neither_torch_nor_transformers():
    """The public names load on first use: `hfkit --help` answers without importing the heavy libraries (it took
    14 s on a 2-core CPU when hfkit/__init__ imported every trainer), and a public name still imports."""
    code = (
        "import sys, contextlib, io\n"
        "import hfkit\n"
        "from hfkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules))\n"
        "from hfkit import DistillTrainer, load_model\n"
        "print(DistillTrainer.__module__, load_model.__module__, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.splitlines() == ["[]", "hfkit.trainers.distill_trainer hfkit.io True"]
    import hfkit

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hfkit.nope  # noqa: B018
    # Every public name resolves to what its module defines, and none is listed without a module to load it from.
    assert set(hfkit.__all__) == set(hfkit._EXPORTS)
    for name, module in hfkit._EXPORTS.items():
        assert getattr(hfkit, name) is getattr(importlib.import_module(module, "hfkit"), name)


def test_command_help_groups_every_field_with_help_and_default(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() names the command in sys.argv[0] for argparse
    monkeypatch.setattr(os, "environ", {**os.environ, "COLUMNS": "100"})
    with pytest.raises(SystemExit) as exit_:
        main(["distill", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hfkit distill")
    for group in ("DistillModelArguments:", "DataArguments:", "AugmentArguments:", "DistillConfig:"):
        assert group in out, group
    # a field of each group, with its help and its default
    assert "--student_layers" in out and "--augment_copies" in out and "(default: 2.0)" in out
    assert out.index("DataArguments:") < out.index("\n  --train_file") < out.index("DistillConfig:")


def test_shipped_configs_are_reachable_by_name(tmp_path, monkeypatch):
    names = shipped_configs()
    assert "distill/minilm_l3_sst2_demo" in names and len(names) == len(list(SHIPPED_CONFIGS.rglob("*.yaml")))
    by_name = resolve_config("distill/minilm_l3_sst2_demo")
    assert by_name == SHIPPED_CONFIGS / "distill" / "minilm_l3_sst2_demo.yaml"
    assert resolve_config("minilm_l3_sst2_demo.yaml") == by_name  # a unique bare name
    assert (
        resolve_config("recipes/configs/distill/minilm_l3_sst2_demo.yaml").resolve() == by_name
    )  # README paths
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_config("minilm_l3_sst2")  # distill/ and compress/ both ship one
    with pytest.raises(ConfigError, match="did you mean: distill/minilm_l3_sst2_demo"):
        resolve_config("distill/minilm_l3_sst2_dem")
    own = tmp_path / "distill" / "minilm_l3_sst2_demo.yaml"  # a user's file wins over a shipped name
    own.parent.mkdir()
    own.write_text("alpha: 0.9\n")
    monkeypatch.chdir(tmp_path)
    assert load_yaml_config("distill/minilm_l3_sst2_demo.yaml") == {"alpha": 0.9}


def test_python_m_hfkit_runs_the_recipe_with_a_shipped_config():
    """`python -m hfkit X` (what `accelerate launch -m hfkit X` runs) parses a shipped config by name; a bad
    override is one message and exit code 2. recipes/X.py runs the same `main` (test_run_errors.py)."""
    result = run(
        "-m", "hfkit", "classify", "--config", "classify/minilm_sst2_demo", "--num_train_epochs", "oops"
    )
    assert result.returncode == 2, result.stderr
    assert "num_train_epochs" in result.stderr and "Traceback" not in result.stderr


def test_recipe_scripts_are_thin_wrappers():
    for script in (REPO / "recipes").glob("*.py"):
        text = script.read_text()
        assert f"from hfkit.recipes.{script.stem} import main" in text and "run_recipe(main)" in text, script


def test_configs_listing_and_version(capsys):
    main(["configs"])
    assert capsys.readouterr().out.split() == shipped_configs()
    main(["--version"])
    assert capsys.readouterr().out.startswith("hfkit ")


def test_pyproject_declares_the_command_and_ships_the_configs(tmp_path):
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["scripts"] == {"hfkit": "hfkit.cli:main"}
    # Build the wheel a plain `pip install` would install: recipes and configs must be inside it.
    # From a copy: setuptools builds in the source tree (build/, *.egg-info), which must not touch the repo.
    source = tmp_path / "src"
    shutil.copytree(REPO / "hfkit", source / "hfkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(source)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if result.returncode != 0 and "setuptools" in result.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("hfkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in SHIPPED_CONFIGS.rglob("*.yaml"):
        assert f"hfkit/recipes/configs/{config.relative_to(SHIPPED_CONFIGS).as_posix()}" in names, config
    assert {f"hfkit/recipes/{c}.py" for c in COMMANDS} <= names and "hfkit/__main__.py" in names
    for config in (REPO / "hfkit" / "accelerate_configs").glob("*.yaml"):  # found by name once installed
        assert f"hfkit/accelerate_configs/{config.name}" in names, config
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hfkit = hfkit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_recipes_configs_stays_reachable_from_a_clone():
    assert (REPO / "recipes" / "configs").resolve() == SHIPPED_CONFIGS


def test_committed_config_reference_is_current():
    """docs/config_reference.md is generated from the dataclasses; regenerate it when a field changes."""
    committed = (REPO / "docs" / "config_reference.md").read_text()
    assert committed == config_reference(), (
        "docs/config_reference.md is stale: run `hfkit reference > docs/config_reference.md` and commit it"
    )


def test_reference_lists_every_key_of_every_command():
    text = config_reference()
    for command in COMMANDS:
        recipe = importlib.import_module(f"hfkit.recipes.{command}")
        assert f"## `hfkit {command}`" in text
        for dtype in recipe.ARG_TYPES:
            for f in dataclasses.fields(dtype):
                if f.init and f.name not in TRAINING_ARGUMENT_NAMES:
                    assert f"| `{f.name}` |" in text, (command, f.name)
    assert "| `student_layers` |" in text and "| `augment_copies` |" in text and "| `chains` |" in text


def test_cp_copies_a_shipped_config_and_never_overwrites_without_force(tmp_path, capsys):
    target = tmp_path / "mine.yaml"
    main(["cp", "distill/minilm_l3_sst2", str(target)])
    assert target.read_bytes() == (SHIPPED_CONFIGS / "distill" / "minilm_l3_sst2.yaml").read_bytes()
    target.write_text("edited: true\n")
    with pytest.raises(SystemExit) as exit_:
        main(["cp", "distill/minilm_l3_sst2", str(target)])
    assert exit_.value.code == 2 and "exists" in capsys.readouterr().err
    assert target.read_text() == "edited: true\n"  # the user's edit is kept
    main(["cp", "distill/minilm_l3_sst2", str(target), "--force"])
    assert "teacher" in target.read_text()
    main(["cp", "single_gpu_bf16", str(tmp_path)])  # an accelerate config, into a folder
    assert (
        (tmp_path / "single_gpu_bf16.yaml")
        .read_text()
        .startswith((REPO / "hfkit" / "accelerate_configs" / "single_gpu_bf16.yaml").read_text()[:40])
    )
    with pytest.raises(SystemExit) as exit_:
        main(["cp", "no/such_config", str(tmp_path / "x.yaml")])
    assert exit_.value.code == 2 and "no shipped config named 'no/such_config'" in capsys.readouterr().err


def test_accelerate_configs_are_found_by_name_and_launch_the_command(monkeypatch, capsys):
    main(["accelerate-config"])
    listed = capsys.readouterr().out.split()
    assert "single_gpu_bf16" in listed and "multi_node_fsdp" in listed
    main(["accelerate-config", "single_gpu_bf16"])
    assert capsys.readouterr().out.strip() == str(
        REPO / "hfkit" / "accelerate_configs" / "single_gpu_bf16.yaml"
    )
    calls = []
    monkeypatch.setattr("hfkit.cli.subprocess.call", lambda cmd: calls.append(cmd) or 0)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "distill",
                "--config",
                "distill/minilm_l3_sst2_demo",
                "--accelerate_config",
                "cpu_ddp",
                "--seed",
                "3",
            ]
        )
    assert exit_.value.code == 0
    assert calls == [["accelerate", "launch", "--config_file", str(REPO / "hfkit" / "accelerate_configs" / "cpu_ddp.yaml"),
                      "-m", "hfkit", "distill", "--config", "distill/minilm_l3_sst2_demo", "--seed", "3"]]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(["distill", "--accelerate_config", "no_such"])
    assert exit_.value.code == 2 and "accelerate config not found: no_such" in capsys.readouterr().err
