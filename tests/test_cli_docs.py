"""The docs stay true: docs/cli.md is the commands' --help, and docs/custom-tools.md's code runs as shown."""

import contextlib
import io
import re
from pathlib import Path

from agentkit.cli import cli_reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_cli_reference_matches_the_help_output():
    expected = cli_reference()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == expected, (
        "docs/cli.md is out of date: regenerate it with `agentkit cli-reference > docs/cli.md`"
    )
    for command in (
        "## `agentkit`",
        "## `agentkit chat`",
        "## `agentkit run`",
        "## `agentkit ls`",
        "## `agentkit bench`",
    ):
        assert command in expected
    assert "cli-reference" not in expected.split("-->", 1)[1]  # the hidden command stays hidden


def test_custom_tools_page_runs_and_prints_what_it_shows():
    text = (DOCS / "custom-tools.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    shown = re.findall(r"```text\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 3 and len(shown) == 1
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "docs/custom-tools.md", "exec"), namespace)
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("Population[city]: Return the number of people")
    assert printed[1:] == shown[0].splitlines()
    assert namespace["result"].answer == "2748109" and namespace["result"].ok
    assert namespace["population"]("Vienna") == "Vienna has 2,005,760 inhabitants."
    prompt = namespace["agent"].prompt("How many people live in Paris?")  # the third block: its own example
    assert "Action 2: Population[Vienna]\nObservation 2: Vienna has 2,005,760 inhabitants." in prompt


def test_the_examples_in_cli_md_run(tmp_path):
    import os
    import subprocess
    import sys

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL).group(1)
    lines = [line for line in block.splitlines() if "embedded" not in line]  # no real model in the fast tests
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Answer: 42") == 1 and '"answer": 42' in proc.stdout
    assert "Sample datasets" in proc.stdout
