"""The model-call cache: what a key covers, reruns that make no model call, concurrent writers, kill -9, bounds,
and ``agentkit cache``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from click.testing import CliRunner

from agentkit.cache import CallCache, call_key, model_identity
from agentkit.cli import main
from agentkit.eval import run_benchmark
from agentkit.eval.runner import TIMING
from agentkit.llm import Chat, Completion, Constraint, GenerationConfig, Message, ScriptedLLM
from agentkit.result import Result
from agentkit.runtime import Generate, Usage, run_episode, run_episodes
from tests.test_eval_runner import any_reply

GREEDY = GenerationConfig(max_new_tokens=16)


def without_timing(path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.dumps({k: v for k, v in json.loads(line).items() if k != TIMING}) for line in lines]


def test_a_rerun_with_the_cache_makes_no_model_call_and_writes_the_same_records(tmp_path):
    cache = CallCache(tmp_path / "cache")
    methods = ["direct", "cot", "pal", "pal-sc"]  # pal-sc samples with seeds, so it is cached too
    first = ScriptedLLM(any_reply)
    run_benchmark("gsm8k-sample", methods, first, output_dir=tmp_path / "a", limit=6, cache=cache)
    second = ScriptedLLM(any_reply)
    result = run_benchmark("gsm8k-sample", methods, second, output_dir=tmp_path / "b", limit=6, cache=cache)
    assert first.prompts and second.prompts == []
    assert result.usage.cache_hits == result.usage.model_calls == len(first.prompts)
    for method in methods:
        assert without_timing(tmp_path / "a" / method / "samples.jsonl") == without_timing(
            tmp_path / "b" / method / "samples.jsonl"
        )
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["this_invocation"]["cache_hits"] == len(first.prompts)


def test_what_a_key_covers():
    identity = "m"
    key = call_key(identity, "prompt", GREEDY)
    assert key == call_key(identity, "prompt", GREEDY.model_copy(update={"seed": 3, "temperature": 0.5}))  # ignored
    different = [
        call_key("other", "prompt", GREEDY),
        call_key(identity, "prompt ", GREEDY),
        call_key(identity, Chat(messages=(Message(role="user", content="prompt"),)), GREEDY),
        call_key(identity, "prompt", GREEDY.model_copy(update={"max_new_tokens": 17})),
        call_key(identity, "prompt", GREEDY.model_copy(update={"stop": ["\n"]})),
        call_key(identity, "prompt", GREEDY.model_copy(update={"constraint": Constraint(regex="[0-9]+")})),
        call_key(identity, "prompt", GREEDY.model_copy(update={"do_sample": True, "seed": 1})),
    ]
    assert len({key, *different}) == 1 + len(different)
    sampled = GREEDY.model_copy(update={"do_sample": True, "seed": 1})
    assert call_key(identity, "p", sampled) != call_key(identity, "p", sampled.model_copy(update={"seed": 2}))
    assert call_key(identity, "p", GREEDY.model_copy(update={"do_sample": True})) is None  # unseeded: never


def test_unseeded_samples_always_reach_the_model(tmp_path):
    cache = CallCache(tmp_path)
    llm = ScriptedLLM(lambda prompt: "x")
    sample = GREEDY.model_copy(update={"do_sample": True})

    def episode():
        yield Generate("q", sample)
        return Result(method="t", question="q")

    usage = Usage()
    run_episodes(llm, [episode(), episode()], cache=cache, usage=usage)
    run_episodes(llm, [episode()], cache=cache, usage=usage)
    assert len(llm.prompts) == 3 and usage.cache_hits == 0 and cache.info()["entries"] == 0


def test_the_model_s_identity_tells_models_apart(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    one.write_text('["a"]')
    two.write_text('["b"]')
    from agentkit.models import load_model

    assert model_identity(load_model(f"scripted:{one}")) != model_identity(load_model(f"scripted:{two}"))
    assert model_identity(ScriptedLLM([], name="a")) != model_identity(ScriptedLLM([], name="b"))


def test_a_hit_streams_its_text_and_never_reaches_the_session(tmp_path):
    cache = CallCache(tmp_path)

    def episode():
        completion = yield Generate("q", GREEDY)
        return Result(method="t", question="q", answer=completion.text)

    run_episode(ScriptedLLM(["forty two"]), episode(), cache=cache)
    silent = ScriptedLLM([])  # would raise on any call
    pieces = []
    result = run_episode(silent, episode(), cache=cache, on_token=pieces.append)
    assert result.answer == "forty two" and pieces == ["forty two"] and silent.prompts == []


def test_a_torn_or_foreign_entry_is_ignored(tmp_path):
    cache = CallCache(tmp_path)
    key = call_key("m", "p", GREEDY)
    with sqlite3.connect(cache.path) as db:
        db.execute("INSERT INTO calls VALUES (?, ?, ?, ?)", (key, '{"text": "cut', 10, time.time()))
    assert cache.get(key) is None
    cache.put(key, Completion(text="whole", finish_reason="stop"))
    assert cache.get(key).text == "whole"


WRITER = """
import sys
from agentkit.cache import CallCache, call_key
from agentkit.llm import Completion, GenerationConfig
cache = CallCache(sys.argv[1])
for i in range(int(sys.argv[3])):
    cache.put(call_key("m", f"{sys.argv[2]}-{i}", GenerationConfig()),
              Completion(text="t" * 200 + str(i), finish_reason="stop"))
"""


def test_concurrent_writers_and_a_kill_9_leave_only_whole_entries(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, "150"], env=env) for name in ("a", "b")
    ]
    doomed = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "k", "1000000"], env=env)
    for writer in writers:
        assert writer.wait(60) == 0
    time.sleep(0.2)
    os.kill(doomed.pid, signal.SIGKILL)  # in the middle of its writes
    doomed.wait(10)
    cache = CallCache(tmp_path)
    for name in ("a", "b"):
        for i in range(150):
            assert cache.get(call_key("m", f"{name}-{i}", GenerationConfig())).text.endswith(str(i))
    with sqlite3.connect(cache.path) as db:
        rows = db.execute("SELECT key, value FROM calls").fetchall()
    assert len(rows) > 300  # the killed writer got some in
    assert all(Completion.model_validate_json(value) for _, value in rows)


def test_the_store_stays_within_its_bound(tmp_path):
    cache = CallCache(tmp_path, max_mb=0.05)  # ~52 kB
    for i in range(400):
        cache.put(call_key("m", str(i), GREEDY), Completion(text="x" * 1000, finish_reason="stop"))
    info = cache.info()
    assert info["bytes"] <= cache.max_bytes and info["entries"] < 400
    assert cache.get(call_key("m", "399", GREEDY)) is not None  # the newest stay
    assert cache.get(call_key("m", "0", GREEDY)) is None  # the oldest went first


def test_cache_info_and_clear(tmp_path):
    cache = CallCache(tmp_path)
    cache.put(call_key("m", "p", GREEDY), Completion(text="t", finish_reason="stop"))
    runner = CliRunner()
    shown = runner.invoke(main, ["cache", "info", "--dir", str(tmp_path)])
    assert shown.exit_code == 0 and "1 completions" in shown.output and str(cache.path) in shown.output
    cleared = runner.invoke(main, ["cache", "clear", "--dir", str(tmp_path)])
    assert cleared.exit_code == 0 and "cleared 1 completions" in cleared.output
    assert CallCache(tmp_path).info()["entries"] == 0


def test_bench_with_cache_on_the_command_line(tmp_path):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps({"*": " 18"}))
    runner = CliRunner()
    args = [
        "bench",
        "--dataset",
        "gsm8k-sample",
        "--method",
        "direct",
        "--model",
        f"scripted:{replies}",
        "-n",
        "3",
        "--quiet",
        "--cache",
        str(tmp_path / "cache"),
    ]
    first = runner.invoke(main, [*args, "--output-dir", str(tmp_path / "a")])
    second = runner.invoke(main, [*args, "--output-dir", str(tmp_path / "b")])
    assert first.exit_code == 0 and "3 model calls (0 from the cache)" in first.output
    assert second.exit_code == 0 and "3 model calls (3 from the cache)" in second.output
