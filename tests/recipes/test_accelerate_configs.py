"""Every shipped accelerate config is one that `accelerate launch --config_file` accepts."""

from __future__ import annotations

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from tests.conftest import REPO

CONFIGS = sorted((REPO / "hfkit" / "accelerate_configs").glob("*.yaml"))


def test_expected_configs_are_shipped():
    assert {p.stem for p in CONFIGS} >= {
        "cpu", "cpu_ddp", "single_gpu_bf16", "multi_gpu_bf16", "fsdp",
        "multi_node_ddp", "multi_node_fsdp", "deepspeed_zero3",
    }  # fmt: skip


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_as_accelerate_config(path):
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_processes >= 1
    if "bf16" in path.stem or "fsdp" in path.stem or "deepspeed" in path.stem:
        assert str(config.mixed_precision) == "bf16"
    if "fsdp" in path.stem:
        assert config.fsdp_config["fsdp_version"] == 2
    assert config.num_processes % config.num_machines == 0  # the same number of processes on every machine


def _launch_args(path, *flags: str):
    """What `accelerate launch --config_file path <flags> -m hfkit clm` resolves, by accelerate's own code."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(path), *flags, "-m", "hfkit", "clm"])
    return _validate_launch_command(args)[0]


@pytest.mark.parametrize("name, kind", [("multi_node_ddp", "multi_gpu"), ("multi_node_fsdp", "use_fsdp")])
def test_multi_node_configs_start_their_share_of_processes_on_each_machine(name, kind):
    from accelerate.utils.launch import prepare_multi_gpu_env

    path = REPO / "hfkit" / "accelerate_configs" / f"{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_machines == 2 and config.num_processes == 16 and config.machine_rank == 0
    assert config.main_process_ip and config.main_process_port
    # Machine 1 of 2, as launched there: its rank from the command line, the rest from the file.
    args = _launch_args(path, "--machine_rank", "1")
    assert getattr(args, kind) and args.num_machines == 2
    env = prepare_multi_gpu_env(args)  # the torchrun arguments accelerate builds (machine 1 checks no port)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    assert args.rdzv_endpoint == f"{config.main_process_ip}:{config.main_process_port}"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    if kind == "use_fsdp":
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"


def test_deepspeed_zero3_config_shards_everything_and_leaves_batch_settings_to_the_trainer():
    path = REPO / "hfkit" / "accelerate_configs" / "deepspeed_zero3.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type == "DEEPSPEED" and str(config.mixed_precision) == "bf16"
    ds = config.deepspeed_config
    assert ds["zero_stage"] == 3 and ds["zero3_init_flag"] and ds["zero3_save_16bit_model"]
    assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
    # Left out on purpose: accelerate then passes "auto" and the Trainer fills them from its own arguments.
    assert not {"gradient_accumulation_steps", "gradient_clipping", "train_micro_batch_size_per_gpu"} & set(
        ds
    )
    args = _launch_args(path)  # parsing needs no deepspeed install
    assert args.use_deepspeed and args.zero_stage == 3 and args.deepspeed_multinode_launcher == "standard"
