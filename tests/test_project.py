"""The project's promises about itself: README's commands, CI calling them, security habits."""

from __future__ import annotations

import re

from tests.conftest import REPO


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_readme_opens_with_install_and_run_commands():
    demo, tests = readme_commands()[:2]
    for command in (demo, tests):
        assert command.startswith("bash scripts/install.sh && ")
    assert "hfkit distill --config distill/minilm_l3_sst2_demo" in demo and "pytest" in tests
    install = (REPO / "scripts" / "install.sh").read_text()
    assert "torch==2.13.0" in install
    # The install prints errors only, then one summary line.
    pip_calls = [line for line in install.splitlines() if "pip install" in line and not line.startswith("#")]
    assert pip_calls and all(" -qq " in line for line in pip_calls), pip_calls


def test_ci_runs_readme_test_command():
    assert readme_commands()[1] in (REPO / ".ci" / "run").read_text()


def test_no_unsafe_loading_in_package():
    for path in [*REPO.glob("hfkit/**/*.py"), *REPO.glob("recipes/*.py")]:  # hfkit/recipes/ included
        text = path.read_text()
        assert "trust_remote_code=True" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert "pickle" not in text, path
