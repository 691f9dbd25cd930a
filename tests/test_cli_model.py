"""End to end on the real default model (Gemma 3 270M): slow, deselect with ``-m "not model"``."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]


def test_run_on_the_default_model_prints_an_answer_line():
    exe = Path(sys.executable).with_name("agentkit")
    command = [str(exe), "run", "What is 6 times 7?", "--method", "cot", "--max-tokens", "32"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=850)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    # The model may or may not find the answer: either way the run completes and says so on a labelled line.
    assert last.startswith("Answer: "), proc.stdout
    assert "Traceback" not in proc.stderr
