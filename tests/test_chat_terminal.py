"""``agentkit chat`` on a real terminal (a pty via pexpect): prompt_toolkit input, history, Ctrl-C, Ctrl-D.

The scripted model answers by question (a JSON object) and streams slowly (``?delay=``) so Ctrl-C lands in the
middle of a generation. Patterns match text only: the terminal output is full of escape sequences.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="needs a pty"),
    pytest.mark.timeout(120),
]

AGENTKIT = Path(sys.executable).with_name("agentkit")
STORY = "Once upon a time " + "there was a very long story " * 40


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "replies.json"
    path.write_text(json.dumps({"6 times 7": "6 times 7 is 42.", "long story": STORY, "*": "I see."}))
    return f"scripted:{path}?delay=0.1"


def loose(text):
    """A pattern for ``text`` as the terminal draws it: prompt_toolkit may move the cursor instead of writing spaces."""
    return r"(?:\s|\x1b\[\d*C)+".join(re.escape(word) for word in text.split())


def spawn(model, history):
    if not AGENTKIT.exists():
        pytest.skip("the agentkit console script is not installed next to this Python")
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(
        str(AGENTKIT),
        ["chat", "--model", model, "--history-file", str(history)],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.expect("chat>")
    return child


def leave(child):
    child.sendeof()  # Ctrl-D on an empty line
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_terminal_session_history_interrupt_and_exit(model, tmp_path):
    history = tmp_path / "history"
    child = spawn(model, history)

    child.sendline("What is 6 times 7?")
    child.expect("6 times 7 is 42")
    child.expect("chat>")

    child.send("\x1b[A")  # up arrow: recall the previous question ...
    child.expect(loose("What is 6 times 7?"))
    child.send("\r")  # ... and run it again
    child.expect("6 times 7 is 42")
    child.expect("chat>")

    child.sendline("tell me a long story")
    child.expect("there was a very long")
    child.sendintr()  # Ctrl-C in the middle of the generation
    child.expect(r"\(interrupted\)")
    child.expect("chat>")
    assert "there was a very long story" * 40 not in child.before  # the story was cut short

    child.sendintr()  # Ctrl-C at the prompt: just a fresh line
    child.expect("chat>")
    child.sendline("/mode")  # the loop still answers
    child.expect("mode: chat")
    child.expect("chat>")
    assert leave(child) == 0

    lines = [line[1:] for line in history.read_text().splitlines() if line.startswith("+")]
    assert "What is 6 times 7?" in lines and "tell me a long story" in lines and lines[-1] == "/mode"

    # A new session recalls the last session's lines.
    child = spawn(model, history)
    child.send("\x1b[A")
    child.expect("/mode")
    child.send("\x1b[A")
    child.expect(loose("tell me a long story"))
    child.send("\x1b[A")
    child.expect(loose("What is 6 times 7?"))
    child.send("\r")
    child.expect("6 times 7 is 42")
    child.expect("chat>")
    assert leave(child) == 0


def test_terminal_completes_slash_commands(model, tmp_path):
    child = spawn(model, tmp_path / "history")
    child.send("/temp")
    child.expect("/temperature")  # the completion menu offers the command ...
    child.send("\t")  # ... and Tab takes it
    child.expect("/temperature")
    child.send(" 0.3\r")
    child.expect("temperature: 0.3")
    child.expect("chat>")
    assert leave(child) == 0
