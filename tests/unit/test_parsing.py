"""Tests for hfkit.parsing: YAML config + command-line overrides over dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest
from transformers import TrainingArguments

from hfkit.parsing import ConfigError, load_yaml_config, parse_args, valid_keys


class Pooling(enum.Enum):
    MEAN = "mean"
    CLS = "cls"


@dataclass
class ModelArgs:
    model_name: str
    dropout: float = 0.1
    pooling: Pooling = Pooling.MEAN
    freeze: bool = False


@dataclass
class DataArgs:
    max_length: int = 128
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    padding: Literal["longest", "max_length"] = "longest"
    shuffle: bool = True
    extra: dict | None = None
    seen: list[str] = field(default_factory=list, init=False)

    def __post_init__(self):
        if self.max_length <= 0:
            raise ValueError(f"max_length must be positive, got {self.max_length}")
        self.seen.append("post_init")


LOCAL = (ModelArgs, DataArgs)


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "cfg.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_yaml_only(write):
    path = write("model_name: tiny-bert\ndropout: 0.3\nmax_length: 64\n")
    model, data = parse_args(LOCAL, ["--config", str(path)])
    assert model == ModelArgs(model_name="tiny-bert", dropout=0.3)
    assert data.max_length == 64 and data.seen == ["post_init"]


def test_cli_only():
    model, data = parse_args(LOCAL, ["--model_name", "m", "--max_length", "32", "--freeze"])
    assert (model.model_name, model.freeze, data.max_length) == ("m", True, 32)


def test_cli_overrides_yaml_and_post_init_runs_once_on_final_values(write):
    # The YAML's max_length would fail __post_init__; the CLI value is the one that gets validated.
    path = write("model_name: from-yaml\ndropout: 0.3\nmax_length: -1\n")
    model, data = parse_args(LOCAL, ["--dropout", "0.5", "--config", str(path), "--max_length", "16"])
    assert (model.model_name, model.dropout, data.max_length) == ("from-yaml", 0.5, 16)
    assert data.seen == ["post_init"]


def test_post_init_validation_applies_to_yaml_values(write):
    path = write("model_name: m\nmax_length: 0\n")
    with pytest.raises(ValueError, match="max_length must be positive"):
        parse_args(LOCAL, ["--config", str(path)])


def test_config_equals_form(write):
    path = write("model_name: eq-form\n")
    (model, _) = parse_args(LOCAL, [f"--config={path}"])
    assert model.model_name == "eq-form"


def test_args_none_reads_sys_argv(write, monkeypatch):
    path = write("model_name: argv\n")
    monkeypatch.setattr("sys.argv", ["train.py", "--config", str(path), "--dropout", "0.2"])
    model, _ = parse_args(LOCAL)
    assert (model.model_name, model.dropout) == ("argv", 0.2)


def test_scientific_notation_in_yaml_is_float(write):
    path = write("model_name: m\ndropout: 5e-5\nextra: {min_lr: 1e-6}\n")
    model, data = parse_args(LOCAL, ["--config", str(path)])
    assert isinstance(model.dropout, float) and model.dropout == 5e-05
    assert data.extra == {"min_lr": 1e-06}


def test_list_bool_dict_none_values(write):
    path = write(
        "model_name: m\nfreeze: true\nshuffle: false\ntext_columns: [start, end]\n"
        "extra: {num_cycles: 0.5, tags: [x]}\n"
    )
    model, data = parse_args(LOCAL, ["--config", str(path)])
    assert model.freeze is True and data.shuffle is False
    assert data.text_columns == ["start", "end"]
    assert data.extra == {"num_cycles": 0.5, "tags": ["x"]}
    path = write("model_name: m\nextra: null\ntext_columns: single\n", "b.yaml")
    _, data = parse_args(LOCAL, ["--config", str(path)])
    assert data.extra is None and data.text_columns == ["single"]


def test_cli_no_flag_overrides_yaml_bool(write):
    path = write("model_name: m\nshuffle: true\n")
    _, data = parse_args(LOCAL, ["--config", str(path), "--no_shuffle"])
    assert data.shuffle is False


def test_yaml_no_is_a_string_not_false(write):
    # YAML 1.1 would read `no` as False; for a choice field it must stay the string.
    path = write("output_dir: x\neval_strategy: no\nsave_strategy: epoch\n")
    (ta,) = parse_args([TrainingArguments], ["--config", str(path)])
    assert ta.eval_strategy == "no" and ta.save_strategy == "epoch"


def test_enum_and_literal_from_yaml(write):
    path = write("model_name: m\npooling: cls\npadding: max_length\n")
    model, data = parse_args(LOCAL, ["--config", str(path)])
    # Same as the command line: HfArgumentParser passes an enum field's value; the dataclass may convert it.
    assert model.pooling == Pooling.CLS.value and data.padding == "max_length"
    assert parse_args(LOCAL, ["--model_name", "m", "--pooling", "cls"])[0].pooling == model.pooling


@pytest.mark.parametrize(("line", "key"), [("pooling: max", "pooling"), ("padding: longst", "padding")])
def test_bad_choice_in_yaml_is_readable(write, line, key):
    path = write(f"model_name: m\n{line}\n")
    with pytest.raises(ConfigError, match=rf"invalid value .* for '{key}' in .*cfg\.yaml; choose from: "):
        parse_args(LOCAL, ["--config", str(path)])


def test_bad_type_in_yaml_is_readable(write):
    path = write("model_name: m\ndropout: lots\n")
    with pytest.raises(ConfigError, match=r"invalid value 'lots' for 'dropout' in .*cfg\.yaml"):
        parse_args(LOCAL, ["--config", str(path)])


def test_required_field_satisfied_by_yaml(write):
    path = write("dropout: 0.2\n")
    with pytest.raises(SystemExit):  # argparse: --model_name is required
        parse_args(LOCAL, ["--config", str(path)])
    path = write("model_name: req\n", "ok.yaml")
    assert parse_args(LOCAL, ["--config", str(path)])[0].model_name == "req"


def test_unknown_yaml_key_names_key_file_and_suggestion(write):
    path = write("model_name: m\nmax_lenght: 10\n")
    with pytest.raises(ValueError, match="unknown key 'max_lenght'") as info:
        parse_args(LOCAL, ["--config", str(path)])
    assert str(path) in str(info.value)
    assert "did you mean: max_length?" in str(info.value)


def test_unknown_cli_key_mentions_command_line():
    with pytest.raises(ValueError, match=r"unknown key 'dropuot' in command line; did you mean: dropout\?"):
        parse_args(LOCAL, ["--model_name", "m", "--dropuot", "0.2"])


def test_cli_prefix_abbreviation_is_not_silently_accepted():
    with pytest.raises(ConfigError, match="unknown key 'max_len' in command line; did you mean: max_length"):
        parse_args(LOCAL, ["--model_name", "m", "--max_len=8"])


def test_all_unknown_keys_reported_together(write):
    path = write("model_name: m\nmax_lenght: 1\nshufle: true\nzzz_nothing_alike: 3\n")
    with pytest.raises(ConfigError) as info:
        parse_args(LOCAL, ["--config", str(path)])
    msg = str(info.value)
    for key in ("max_lenght", "shufle", "zzz_nothing_alike"):
        assert f"unknown key '{key}'" in msg
    assert "did you mean: shuffle?" in msg
    with pytest.raises(ConfigError) as info:
        parse_args(LOCAL, ["--model_name", "m", "--dropuot", "1", "--paddin=x"])
    assert "'dropuot'" in str(info.value) and "'paddin'" in str(info.value)


def test_stray_positional_is_an_error():
    with pytest.raises(ConfigError, match="unexpected command-line arguments: stray"):
        parse_args(LOCAL, ["--model_name", "m", "stray"])


def test_missing_config_file_names_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(
        ValueError,
        match="config file not found: .*nope.yaml .*; pass an existing YAML file or a shipped config name",
    ):
        parse_args(LOCAL, ["--config", str(missing)])
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml_config(missing)


def test_non_mapping_yaml_is_an_error(write):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml_config(write("- a\n- b\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml_config(write("a: [unclosed\n", "broken.yaml"))


def test_empty_yaml_is_empty_dict(write):
    assert load_yaml_config(write("# only a comment\n")) == {}
    model, _ = parse_args(LOCAL, ["--config", str(write("", "empty.yaml")), "--model_name", "m"])
    assert model.model_name == "m"


def test_valid_keys_covers_all_dataclasses():
    keys = valid_keys([*LOCAL, TrainingArguments])
    assert {"model_name", "dropout", "max_length", "text_columns", "learning_rate", "output_dir"} <= set(keys)
    assert "seen" not in keys  # init=False fields are not settable
    assert len(keys) == len(set(keys))


def test_training_arguments_round_trip(write, tmp_path):
    path = write(
        f"output_dir: {tmp_path / 'out'}\nlearning_rate: 5e-5\nnum_train_epochs: 2\n"
        "lr_scheduler_type: cosine\nwarmup_steps: 0.1\nlr_scheduler_kwargs: {num_cycles: 0.5}\n"
        "label_names: [labels, aux]\nreport_to: none\nmodel_name: tiny\n"
    )
    model, _, ta = parse_args([*LOCAL, TrainingArguments], ["--config", str(path), "--num_train_epochs", "3"])
    assert model.model_name == "tiny"
    assert isinstance(ta.learning_rate, float) and ta.learning_rate == 5e-05
    assert ta.num_train_epochs == 3.0
    assert ta.lr_scheduler_type == "cosine"
    assert ta.warmup_steps == 0.1
    assert ta.lr_scheduler_kwargs == {"num_cycles": 0.5}
    assert ta.label_names == ["labels", "aux"]
    assert ta.output_dir == str(tmp_path / "out")


def test_training_arguments_bad_scheduler_is_readable(write, tmp_path):
    path = write(f"output_dir: {tmp_path}\nlr_scheduler_type: cosin\n")
    with pytest.raises(
        ConfigError, match="invalid value 'cosin' for 'lr_scheduler_type'.*choose from: .*cosine"
    ):
        parse_args([TrainingArguments], ["--config", str(path)])


def test_help_prints_argparse_help_and_exits(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args([*LOCAL, TrainingArguments], ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--config FILE_OR_NAME" in out and "--learning_rate" in out and "--max_length" in out


def test_environment_variables_in_config_values(write, monkeypatch):
    monkeypatch.setenv("MY_DATA", "/data/here")
    monkeypatch.delenv("NOT_SET", raising=False)
    values = load_yaml_config(
        write(
            "a: ${MY_DATA}/x.tsv\n"
            "b: ${NOT_SET:-fallback}/y.tsv\n"
            'c: ["${MY_DATA}", plain]\n'  # inside [...] a ${...} is quoted (YAML flow syntax)
            "e: 5\n"
        )
    )
    assert values == {"a": "/data/here/x.tsv", "b": "fallback/y.tsv", "c": ["/data/here", "plain"], "e": 5}


def test_a_variable_with_no_value_and_no_default_is_an_error(write, tmp_path, monkeypatch):
    """Left as written, `output_dir: out/${UNDEFINED_VAR}/run` trained into a folder named `${UNDEFINED_VAR}`."""
    monkeypatch.delenv("UNDEFINED_VAR", raising=False)
    monkeypatch.setenv("EMPTY_VAR", "")
    path = write(f"model_name: m\noutput_dir: {tmp_path}/out/${{UNDEFINED_VAR}}/run\n")
    with pytest.raises(
        ConfigError, match=r"\$\{UNDEFINED_VAR\} in 'output_dir' in .*has no value.*export UNDEFINED_VAR="
    ):
        parse_args([*LOCAL, TrainingArguments], ["--config", str(path)])
    with pytest.raises(ConfigError, match=r"\$\{EMPTY_VAR\} in 'a' .*has no value"):
        load_yaml_config(write('a: [x, "${EMPTY_VAR}"]\n', "empty.yaml"))
    assert not (tmp_path / "out").exists()
    # A key given on the command line replaces the file's value: that value is not expanded, so no error.
    _, _, ta = parse_args(
        [*LOCAL, TrainingArguments], ["--config", str(path), "--output_dir", str(tmp_path / "o")]
    )
    assert ta.output_dir == str(tmp_path / "o")


def test_hfkit_data_with_no_value_says_how_to_set_it(write, monkeypatch):
    from hfkit import parsing

    monkeypatch.delenv("HFKIT_DATA", raising=False)
    monkeypatch.setattr(parsing, "data_dir", lambda: None)  # no shared/data folder anywhere
    with pytest.raises(
        ConfigError, match=r"\$\{HFKIT_DATA\} in 'train' .*export HFKIT_DATA=/path/to/shared/data"
    ):
        load_yaml_config(write("train: ${HFKIT_DATA}/sst2/train.tsv\n"))
    assert load_yaml_config(write("train: ${HFKIT_DATA:-data}/x.tsv\n", "b.yaml")) == {"train": "data/x.tsv"}


@pytest.mark.parametrize("name", ["HF_TOKEN", "hf_token", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
                                  "PASSWD", "OPENAI_API_KEY", "MY_PRIVATE_KEY", "GOOGLE_CREDENTIALS"])  # fmt: skip
def test_a_secret_looking_variable_is_never_expanded_into_a_config(name, write, monkeypatch):
    secret = "hf_" + "Sekret0" * 5
    monkeypatch.setenv(name, secret)
    with pytest.raises(ConfigError) as info:
        load_yaml_config(write(f'run_name: "run-${{{name}}}"\n'))
    message = str(info.value)
    assert f"${{{name}}} in 'run_name'" in message and "HF_TOKEN" in message and "hf auth login" in message
    assert secret not in message
    monkeypatch.delenv(name)  # refused by its name, set or not, with a default or not
    with pytest.raises(ConfigError, match="never expanded"):
        load_yaml_config(write(f'run_name: "run-${{{name}:-x}}"\n', "b.yaml"))


def test_variables_that_only_mention_tokens_are_expanded(write, monkeypatch):
    monkeypatch.setenv("MAX_TOKENS", "64")
    monkeypatch.setenv("TOKENIZER_DIR", "/tok")
    assert load_yaml_config(write("a: ${MAX_TOKENS}\nb: ${TOKENIZER_DIR}\n")) == {"a": "64", "b": "/tok"}


def test_hfkit_data_is_found_from_any_directory(tmp_path, monkeypatch):
    """${HFKIT_DATA}: the environment variable, else a shared/data folder beside the working directory or one of
    its parents (the shipped SST-2 configs read ${HFKIT_DATA}/sst2/...)."""
    from hfkit import parsing

    monkeypatch.delenv("HFKIT_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project" / "sub")
    assert parsing.data_dir() == str(tmp_path / "shared" / "data")
    config = load_yaml_config("classify/minilm_sst2_demo")  # a shipped config, by name
    assert config["train_file"] == str(tmp_path / "shared" / "data" / "sst2/sentence_split/train.tsv")
    monkeypatch.setenv("HFKIT_DATA", "/elsewhere")
    assert load_yaml_config("classify/minilm_sst2_demo")["validation_file"] == (
        "/elsewhere/sst2/sentence_split/validation.tsv"
    )


def test_missing_hfkit_data_says_how_to_set_it(tmp_path):
    from hfkit.data import load_data_file
    from hfkit.errors import MissingInputError

    with pytest.raises(MissingInputError, match="Set HFKIT_DATA to the folder that holds the data sets"):
        load_data_file("${HFKIT_DATA}/sst2/train.tsv", "train file")


def test_null_on_the_command_line_clears_an_optional_key(tmp_path):
    from hfkit import ClassifierConfig

    (config,) = parse_args(
        [ClassifierConfig],
        ["--output_dir", str(tmp_path), "--early_stopping_patience", "null", "--max_grad_norm", "0.5"],
    )
    assert config.early_stopping_patience is None and config.max_grad_norm == 0.5
    (config,) = parse_args(
        [ClassifierConfig], ["--output_dir", str(tmp_path), "--early_stopping_patience", "3"]
    )
    assert config.early_stopping_patience == 3
    (config,) = parse_args([ClassifierConfig], ["--output_dir", str(tmp_path), "--report_to", "none"])
    assert config.report_to == []  # "none" is report_to's value (no reporting), not None
    with pytest.raises(SystemExit):  # a non-optional key still refuses it
        parse_args([ClassifierConfig], ["--output_dir", str(tmp_path), "--learning_rate", "null"])
