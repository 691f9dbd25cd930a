"""Transcript tests for ``agentkit chat``: scripted sessions fed on standard input, the printed transcript checked.

Standard input is not a terminal here, so the loop reads plain lines and echoes each after the prompt
(``mode> line``); that makes the transcripts below easy to read and to assert on.
"""

import json
import re

import pytest
from click.testing import CliRunner

from agentkit.cli import main
from agentkit.cli.chat import ChatSession
from agentkit.cli.display import Display
from agentkit.llm import LLM, ScriptedLLM
from agentkit.strategies import Settings, build_strategy
from agentkit.strategies.chat import ChatStrategy as ChatMode
from agentkit.strategies.pal import PAL

CHAT_REPLY = "6 times 7 is 42."
PROGRAM = "def solution():\n    return 6 * 7\n"


def script(tmp_path, replies, name="replies.json"):
    path = tmp_path / name
    path.write_text(json.dumps(replies), encoding="utf-8")
    return f"scripted:{path}"


def chat(tmp_path, replies, lines, *options):
    """Run one chat session; returns (exit code, transcript)."""
    result = CliRunner().invoke(
        main, ["chat", "--model", script(tmp_path, replies), *options], input="".join(line + "\n" for line in lines)
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def after(transcript, echo):
    """The output lines between the echoed input ``echo`` and the next prompt."""
    lines = transcript.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("> " + echo))
    rest = []
    for line in lines[start + 1 :]:
        if re.match(r"^[a-z-]+> ", line):
            break
        rest.append(line)
    return rest


def test_the_done_when_session_chat_then_pal(tmp_path):
    lines = ["What is 6 times 7?", "/mode pal", "What is 6 times 7?", "/quit"]
    code, out = chat(tmp_path, [CHAT_REPLY, PROGRAM], lines)
    assert code == 0
    assert after(out, "What is 6 times 7?") == [CHAT_REPLY]  # the chat reply, streamed, nothing else
    assert after(out, "/mode pal")[0].startswith("mode: pal")
    lines = out.splitlines()
    pal_turn = lines[lines.index("pal> What is 6 times 7?") + 1 :]
    assert pal_turn[:5] == ["Program:", "def solution():", "    return 6 * 7", "Result: 42", "Answer: 42"]
    assert lines[-1] == "pal> /quit"


def test_end_of_input_leaves_with_status_0(tmp_path):
    code, out = chat(tmp_path, ["hello there"], ["hi"])
    assert code == 0 and "hello there" in out


@pytest.mark.parametrize(
    "mode, replies, expected",
    [
        ("direct", [" 42"], ["42", "Answer: 42"]),
        ("cot", [" 6 times 7 is 42. The answer is 42."], ["6 times 7 is 42. The answer is 42.", "Answer: 42"]),
        (
            "cot-sc",
            [" The answer is 42."] * 4 + [" The answer is 41."],
            ["[sample 1/5]", "[sample 5/5]", "Answer: 42  (votes: 42: 4, 41: 1)"],
        ),
        ("pal-sc", [PROGRAM] * 5, ["[sample 1/5]", "Result: 42", "Answer: 42  (votes: 42: 5)"]),
    ],
)
def test_each_mode_streams_its_work_and_labels_the_answer(tmp_path, mode, replies, expected):
    code, out = chat(tmp_path, replies, [f"/mode {mode}", "What is 6 times 7?"])
    assert code == 0
    turn = after(out, "What is 6 times 7?")
    for line in expected:
        assert line in turn, (line, turn)
    assert turn[-1].startswith("Answer: 42")


def test_react_shows_thought_action_observation_and_answer(tmp_path):
    replies = [
        " I should look up Mount Kilimanjaro.\nAction 1: Search[Mount Kilimanjaro]",
        " It stands in Tanzania.\nAction 2: Finish[Tanzania]",
    ]
    code, out = chat(tmp_path, replies, ["/mode react", "Where is Mount Kilimanjaro?", "/trace"])
    turn = after(out, "Where is Mount Kilimanjaro?")
    assert turn[0] == "Thought 1: I should look up Mount Kilimanjaro."
    assert turn[1] == "Action 1: Search[Mount Kilimanjaro]"
    assert turn[2].startswith("Observation 1: Mount Kilimanjaro is a large dormant volcano in Tanzania.")
    assert turn[3:] == ["Thought 2: It stands in Tanzania.", "Action 2: Finish[Tanzania]", "Answer: Tanzania"]
    trace = "\n".join(after(out, "/trace"))
    trajectory = json.loads(trace.split("--- trajectory ---\n", 1)[1])
    assert [s["action"] for s in trajectory["steps"]] == ["Search", "Finish"]
    assert trajectory["answer"] == "Tanzania" and trajectory["finished"] is True


def test_chat_keeps_the_conversation_until_reset(tmp_path):
    replies = ["Hello! I am fine.", "You asked how I am.", "I do not know."]
    lines = ["How are you?", "What did I ask?", "/trace", "/reset", "What did I ask?", "/trace"]
    code, out = chat(tmp_path, replies, lines)
    first_trace, second_trace = out.split("chat> /trace")[1:]
    assert "User: How are you?\nAssistant: Hello! I am fine.\n\nUser: What did I ask?\nAssistant:" in first_trace
    assert "chat history cleared" in out
    assert "How are you?" not in second_trace.split("--- prompt ---")[1].split("--- completion 1 ---")[0]


def test_trace_shows_prompt_completion_program_and_execution(tmp_path):
    code, out = chat(tmp_path, [PROGRAM], ["/trace", "/mode pal", "What is 6 times 7?", "/trace"])
    assert after(out, "/trace")[0].startswith("no episode yet")
    trace = "\n".join(out.split("pal> /trace\n", 1)[1].splitlines())
    for title in ("episode", "question", "prompt", "completion 1", "program", "execution"):
        assert f"--- {title} ---" in trace
    assert "Question: What is 6 times 7?\n```python" in trace
    execution = json.loads(trace.split("--- execution ---\n", 1)[1])
    assert execution["ok"] is True and execution["value"] == 42


def test_save_writes_one_jsonl_record_per_turn(tmp_path):
    target = tmp_path / "transcript.jsonl"
    lines = ["What is 6 times 7?", "/mode pal", "What is 6 times 7?", f"/save {target}"]
    code, out = chat(tmp_path, [CHAT_REPLY, PROGRAM], lines)
    assert f"saved 2 turns to {target}" in out
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["mode"], r["question"], r["answer"]) for r in records] == [
        ("chat", "What is 6 times 7?", CHAT_REPLY),
        ("pal", "What is 6 times 7?", "42"),
    ]
    assert records[1]["result"]["program"] == PROGRAM.strip()
    assert records[1]["result"]["execution"]["value"] == 42
    assert records[0]["result"]["prompt"].endswith("User: What is 6 times 7?\nAssistant:")


@pytest.mark.parametrize(
    "command, message",
    [
        ("/frobnicate", "Unknown command /frobnicate; /help lists the commands"),
        ("/shots -1", "Error: shots must be >= 0, got -1"),
        ("/shots many", "Error: shots must be a whole number >= 0, got 'many'"),
        ("/mode nonsense", "Error: unknown mode 'nonsense'; choose one of: chat, direct, cot"),
        ("/temperature abc", "Error: temperature must be a number >= 0 (0 = greedy), got 'abc'"),
        ("/temperature -2", "Error: temperature must be between 0 and 5"),
        ("/max-tokens 0", "Error: max tokens must be >= 1, got 0"),
        ("/model scripted:/no/such/file.json", "Error: scripted model file /no/such/file.json not found"),
        ("/save", "Error: usage: /save FILE"),
        ("/save /no/such/dir/t.jsonl", "Error: cannot save to /no/such/dir/t.jsonl"),
    ],
)
def test_a_bad_command_gets_one_line_and_the_loop_goes_on(tmp_path, command, message):
    code, out = chat(tmp_path, ["still here"], [command, "hello?"])
    assert code == 0
    reply = after(out, command)
    assert len(reply) == 1 and reply[0].startswith(message), reply
    assert after(out, "hello?") == ["still here"]


def test_settings_commands_change_how_questions_are_answered(tmp_path):
    replies = [" one two three four five six. The answer is 42.", " The answer is 7."]
    lines = [
        "/mode cot",
        "/shots 2",
        "/max-tokens 3",
        "/temperature 0.5",
        "/settings",
        "Q1?",
        "/trace",
        "/max-tokens default",
        "/shots",
        "/temperature",
        "/mode",
        "Q2?",
    ]
    code, out = chat(tmp_path, replies, lines)
    settings = after(out, "/settings")
    assert len(settings) == 1 and settings[0].endswith("; mode cot, shots 2, temperature 0.5, max tokens 3")
    trace = out.split("cot> /trace", 1)[1].split("cot> /max-tokens default")[0]
    prompt = trace.split("--- prompt ---", 1)[1].split("--- completion 1 ---")[0]
    assert prompt.count("Question:") == 3  # two exemplars and the question
    assert trace.split("--- completion 1 ---\n", 1)[1].startswith(" one two three\n")  # cut at 3 tokens
    assert after(out, "Q1?")[-1] == "Answer: (none; length: generation hit max_new_tokens before number)"
    assert after(out, "/shots") == ["shots: 2"]
    assert after(out, "/temperature") == ["temperature: 0.5"]
    assert after(out, "/mode")[0].startswith("mode: cot  (modes: chat, direct")
    assert after(out, "Q2?")[-1] == "Answer: 7"


def test_model_switch_and_failed_turns(tmp_path):
    other = script(tmp_path, ["from the other model"], name="other.json")
    lines = ["first", "second: the script has run out", f"/model {other}", "/model", "third"]
    code, out = chat(tmp_path, ["from the first model"], lines)
    assert after(out, "first") == ["from the first model"]
    failed = after(out, "second: the script has run out")
    assert len(failed) == 1 and failed[0].startswith("Error: ScriptedLLM ran out of replies")
    assert after(out, "/model") == [f"model: {other}"]
    assert after(out, "third") == ["from the other model"]


def test_help_lists_every_command_and_tools_lists_react_tools(tmp_path):
    code, out = chat(tmp_path, [], ["/help", "/tools", "/exit", "never read"])
    help_text = "\n".join(after(out, "/help"))
    for command in (
        "/mode",
        "/shots",
        "/temperature",
        "/max-tokens",
        "/model",
        "/tools",
        "/trace",
        "/save",
        "/reset",
        "/help",
        "/quit, /exit",
    ):
        assert f"  {command} " in help_text
    tools = "\n".join(after(out, "/tools"))
    assert "Search[entity]" in tools and "Lookup[keyword]" in tools and "Finish[answer]" in tools
    assert "never read" not in out and code == 0


def test_mode_option_and_custom_chat_template(tmp_path):
    templates = tmp_path / "mine"
    templates.mkdir()
    template = "PIRATE CHAT\n{% for t in history %}{{ t.user }}{% endfor %}Q: {{ question }}\nA:"
    (templates / "chat.jinja").write_text(template)
    code, out = chat(tmp_path, ["Arr, 42."], ["What is 6 times 7?", "/trace"], "--templates", str(templates))
    assert "PIRATE CHAT\nQ: What is 6 times 7?\nA:" in out
    code, out = chat(tmp_path, [" 42"], ["What is 6 times 7?"], "--method", "direct")
    assert "direct> What is 6 times 7?" in out and "Answer: 42" in out


def test_bad_options_fail_before_the_loop(tmp_path):
    result = CliRunner().invoke(main, ["chat", "--model", "scripted:/no/such.json"], input="hi\n")
    assert result.exit_code == 1
    expected = "Error: scripted model file /no/such.json not found: write a JSON list of replies there"
    assert result.output.strip() == expected
    result = CliRunner().invoke(main, ["chat", "--method", "nonsense"], input="hi\n")
    assert result.exit_code == 1 and "Invalid value for '--method'" in result.output


# ------------------------------------------------------------------------------------------------ the session object
class InterruptedLLM(LLM):
    """Streams a few words, then the user presses Ctrl-C."""

    def generate(self, prompts, config=None):
        raise AssertionError("the chat loop streams")

    def stream(self, prompt, config=None):
        yield "I am thinking"
        raise KeyboardInterrupt


def test_ctrl_c_stops_the_generation_and_keeps_the_session():
    out = []
    session = ChatSession(llm=InterruptedLLM(), model_spec="test", display=Display(out=out.append))
    assert session.ask("first?") is None
    assert "".join(out).endswith("I am thinking\n(interrupted)\n")
    assert session.history == [] and session.turns == []  # an interrupted turn is not remembered
    session.llm = ScriptedLLM(["fine"])
    assert session.ask("second?").answer == "fine"
    assert session.history == [{"user": "second?", "assistant": "fine"}]


GEMMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
    "{{ m.content }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_models_with_a_chat_template_get_it_and_stop_at_end_of_turn():
    llm = ScriptedLLM(
        ["Hi!<end_of_turn>\n<start_of_turn>user\nmore"], chat_template=GEMMA_LIKE, special_tokens={"bos_token": "<bos>"}
    )
    mode = ChatMode(llm, history=[{"user": "hello", "assistant": "hey"}])
    prompt, stop = mode.prompt("how are you?")
    assert llm.render(prompt) == (
        "<bos><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\nhey<end_of_turn>\n"
        "<start_of_turn>user\nhow are you?<end_of_turn>\n<start_of_turn>model\n"
    )  # the BOS stays in the text: the engine then adds no second one
    assert "<end_of_turn>" in stop
    session = ChatSession(llm=llm, model_spec="test", display=Display(out=lambda _t: None))
    result = session.ask("hello")
    assert result.answer == "Hi!" and result.prompt == llm.prompts[-1]
    text_mode = ChatMode(llm, prompt_format="text")  # --prompt-format text: the plain transcript
    assert text_mode.prompt("hello")[0].endswith("User: hello\nAssistant:")


def test_base_models_get_the_transcript_with_user_stop():
    llm = ScriptedLLM(["Fine, thanks.\nUser: and you?"])
    session = ChatSession(
        llm=llm, model_spec="test", display=Display(out=lambda _t: None), settings=Settings(max_tokens=50)
    )
    result = session.ask("How are you?")
    assert result.answer == "Fine, thanks."
    assert result.prompt.endswith("User: How are you?\nAssistant:")


def test_build_strategy_lays_settings_over_the_method_defaults():
    llm = ScriptedLLM([])
    cot = build_strategy("cot", llm, Settings(temperature=0.5, max_tokens=10, seed=3, shots=2))
    assert cot.config.do_sample and cot.config.temperature == 0.5 and cot.config.seed == 3
    assert cot.config.max_new_tokens == 10 and "\nQuestion:" in cot.config.stop and cot.shots == 2
    greedy = build_strategy("pal", llm, Settings())
    assert not greedy.config.do_sample and greedy.config.max_new_tokens == PAL.default_config.max_new_tokens
    sc = build_strategy("cot-sc", llm, Settings(k=3))  # temperature 0: self-consistency samples at its default
    assert len(sc.sample_configs) == 3 and {c.temperature for c in sc.sample_configs} == {0.7}
    hot = build_strategy("pal-sc", llm, Settings(temperature=1.2))
    assert {c.temperature for c in hot.sample_configs} == {1.2} and all(c.do_sample for c in hot.sample_configs)
    talk = build_strategy("chat", llm, Settings(max_tokens=20))
    assert isinstance(talk, ChatMode) and talk.config.max_new_tokens == 20 and not talk.config.do_sample


def test_a_terminal_shows_dots_until_the_first_token():
    out = []
    display = Display(out=out.append, terminal=True)
    display.begin_episode()
    display.begin_generation("Question: q\nAnswer:")
    assert "".join(out) == "..."
    display.token(" 42")
    assert "".join(out) == "..." + "\b\b\b   \b\b\b" + "42"
    plain = []
    display = Display(out=plain.append)  # not a terminal (a pipe, a file): no dots
    display.begin_episode()
    display.begin_generation("Question: q\nAnswer:")
    display.token(" 42")
    assert plain == ["42"]


def test_answer_command_switches_cot_to_text_answers(tmp_path):
    replies = [
        " It was painted in Florence. The answer is Leonardo da Vinci.",
        " It was painted in Florence. The answer is Leonardo da Vinci.",
    ]
    lines = [
        "/mode cot",
        "Who painted the Mona Lisa?",
        "/answer text",
        "/settings",
        "Who painted the Mona Lisa?",
        "/answer words",
        "/answer",
    ]
    code, out = chat(tmp_path, replies, lines)
    assert code == 0
    assert after(out, "Who painted the Mona Lisa?")[-1].startswith("Answer: (none")  # numbers by default
    assert after(out, "/settings")[0].endswith(", answer text")
    assert out.count("Answer: Leonardo da Vinci") == 1
    assert after(out, "/answer words") == ["Error: answer must be one of: number, text, default; got 'words'"]
    assert after(out, "/answer") == ["answer: text"]


def test_settings_are_checked_when_set_and_accept_default(tmp_path):
    lines = [
        "/mode cot",
        "/shots 99",
        "/shots",
        "/shots 2",
        "/mode react",
        "/shots default",
        "/max-tokens default",
        "/answer default",
        "/shots",
    ]
    code, out = chat(tmp_path, [], lines)
    assert code == 0
    (refused,) = after(out, "/shots 99")
    assert refused.startswith("Error: exemplar set 'math' has 8 exemplars but 99 shots were asked for")
    assert "--shots" not in refused  # no advice about a command-line flag inside the loop
    assert after(out, "/shots")[0] == "shots: the method's default"  # unchanged by the refused value
    assert after(out, "/shots default") == ["shots: the method's default"]
    assert after(out, "/max-tokens default") == ["max tokens: the method's default"]
    assert after(out, "/answer default")[0].startswith("answer: the method's default")


def test_trace_and_save_after_ctrl_c_mention_the_interrupted_turn(tmp_path):
    out = []
    session = ChatSession(llm=ScriptedLLM(["fine"]), model_spec="test", display=Display(out=out.append))
    assert session.ask("first?").answer == "fine"
    session.llm = InterruptedLLM()
    assert session.ask("second?") is None
    out.clear()
    session.handle("/trace")
    text = "".join(out)
    assert text.startswith("the last turn ('second?') was interrupted and kept nothing; this is the last finished")
    assert "--- question ---\nfirst?" in text
    out.clear()
    target = tmp_path / "t.jsonl"
    session.handle(f"/save {target}")
    assert "".join(out).strip() == f"saved 1 turn to {target}; 1 interrupted turn (Ctrl-C) not saved"
    assert len(target.read_text().splitlines()) == 1


def test_the_stats_line_says_generated_and_prompt_tokens_apart():
    out = []
    session = ChatSession(
        llm=ScriptedLLM(["four words are here"]), model_spec="test", display=Display(out=out.append), show_stats=True
    )
    result = session.ask("hello?")
    stats = "".join(out).strip().splitlines()[-1]
    assert stats.endswith(f"s; {result.completion_tokens} tokens generated, {result.prompt_tokens} prompt tokens)")
    assert result.completion_tokens == 4


def test_chat_is_a_strategy_in_the_registry():
    from agentkit.strategies import REGISTRY, load_strategy
    from agentkit.strategies.base import Strategy

    assert "chat" in REGISTRY and not REGISTRY["chat"].scored
    history = [{"user": "hi", "assistant": "hello"}]
    strategy = load_strategy("chat", ScriptedLLM(["I am fine."]), history=history)
    assert isinstance(strategy, Strategy) and strategy.history is history
    result = strategy("How are you?")  # like any strategy: one call answers one question
    assert result.answer == "I am fine." and result.method == "chat"
    assert result.prompt.endswith("User: hi\nAssistant: hello\n\nUser: How are you?\nAssistant:")


def test_the_streaming_wrapper_renders_chat_prompts_as_the_model_does():
    from agentkit.cli.display import _Watched
    from agentkit.llm import Chat, Message

    llm = ScriptedLLM(["hi"])
    llm.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    chat_prompt = Chat(messages=(Message(role="user", content="hello"),))
    assert _Watched(llm, lambda _p: None).render(chat_prompt) == llm.render(chat_prompt) == "<user>hello<assistant>"
