"""Every shipped accelerate config is one that `accelerate launch --config_file` accepts."""

from __future__ import annotations

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from tests.conftest import REPO

CONFIGS = sorted((REPO / "accelerate_configs").glob("*.yaml"))


def test_expected_configs_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"cpu", "cpu_ddp", "single_gpu_bf16", "multi_gpu_bf16", "fsdp"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_as_accelerate_config(path):
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_processes >= 1
    if "bf16" in path.stem or path.stem == "fsdp":
        assert str(config.mixed_precision) == "bf16"
    if path.stem == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
