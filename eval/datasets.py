"""Load benchmark examples from local files, shipped sample sets, or Hugging Face dataset names.

Supported inputs (the format is detected from the fields of the first record):

* **GSM8K** JSONL (Cobbe et al., 2021): ``question`` and ``answer``, where the answer holds the worked solution
  and ends in ``#### N``. The gold answer is ``N`` with thousands separators removed.
* **PAL repository** JSONL (Gao et al., 2022; SVAMP, ASDiv, GSM-Hard, MAWPS): ``input`` and ``target``.
* **HotpotQA-style** QA: a JSON list or JSONL of objects with ``question`` and ``answer`` (``_id`` is used as id).
* **Any JSONL** with a field mapping, e.g. ``{"question": "q", "answer": "a"}`` (CLI: ``--field question=q``).
* **Shipped names**: ``gsm8k-sample`` and ``wiki-sample`` (files in ``agentkit/prompts/data``).
* **Hugging Face names** (``gsm8k``, ``openai/gsm8k:main@test``): loaded through the optional ``datasets``
  library, imported only when needed.

Every line (or list item, or row) is its own example, with a stable ``id`` so an interrupted benchmark can
resume: the record's own ``id``/``_id``/``qid``/``uid`` field, else its place in the file (``line-17`` for a JSONL
line, ``item-3`` for a JSON list, ``row-3`` for a Hugging Face row). Public files repeat themselves (ASDiv in PAL's
format has the same question on consecutive lines): a repeated question is kept as its own example, marked with
``meta["repeat_of"]`` (the id of its first occurrence) and counted by :func:`repeats`; a repeated id of the data's
own gets its place appended (``7~line-12``). A malformed record raises :class:`DatasetError` naming the file and
line, e.g. ``data.jsonl:17: missing field 'answer'``.

Deliberately not here: downloading anything (except through ``datasets`` when it is installed and online),
scoring, and prompting.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from agentkit.errors import DatasetError

__all__ = [
    "DatasetError",
    "Example",
    "SHIPPED",
    "shipped_datasets",
    "load_dataset",
    "gsm8k_gold",
    "parse_field_mapping",
    "dataset_fingerprint",
    "Repeats",
    "repeats",
]

#: Shipped sample sets: name -> file name under ``agentkit/prompts/data``.
SHIPPED = {
    "gsm8k-sample": "gsm8k_sample.jsonl",
    "wiki-sample": "wiki_qa_sample.jsonl",
}

_ID_FIELDS = ("id", "_id", "qid", "uid")


@dataclass(frozen=True)
class Example:
    """One benchmark item. ``answer`` is the gold answer as a string (a number for math sets)."""

    id: str
    question: str
    answer: str
    source: str = ""  # "file:line" or "name[index]", for messages
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def gsm8k_gold(solution: str) -> str:
    """The gold answer of a GSM8K solution: the text after the last ``####``, commas removed."""
    if "####" not in solution:
        raise ValueError("no '####' marker")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    gold = gold.rstrip(".").strip()
    if not gold:
        raise ValueError("nothing after '####'")
    return gold


def parse_field_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["question=q", "answer=a"]`` -> ``{"question": "q", "answer": "a"}`` (only these two targets)."""
    mapping: dict[str, str] = {}
    for item in items:
        target, sep, source = item.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not target or not source:
            raise DatasetError(f"--field {item!r}: expected TARGET=SOURCE, e.g. question=q")
        if target not in ("question", "answer", "id"):
            raise DatasetError(f"--field {item!r}: TARGET must be question, answer or id")
        mapping[target] = source
    return mapping


def _format_number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _detect(record: Mapping[str, Any]) -> str:
    if "input" in record and "target" in record:
        return "pal"
    if "question" in record and "answer" in record:
        answer = record["answer"]
        if isinstance(answer, str) and "####" in answer:
            return "gsm8k"
        return "qa"
    return "unknown"


def _convert(record: Any, fmt: str, mapping: Mapping[str, str], where: str, place: str) -> Example:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if mapping:
        qf, af = mapping.get("question", "question"), mapping.get("answer", "answer")
    elif fmt == "pal":
        qf, af = "input", "target"
    else:
        qf, af = "question", "answer"
    for name in (qf, af):
        if name not in record:
            raise DatasetError(f"{where}: missing field {name!r}")
    question = record[qf]
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: field {qf!r} must be a non-empty string")
    raw_answer = record[af]
    meta = {k: v for k, v in record.items() if k not in (qf, af)}
    if isinstance(raw_answer, list):  # several acceptable answers: keep the first as gold, all in meta
        if not raw_answer:
            raise DatasetError(f"{where}: field {af!r} is an empty list")
        meta["answers"] = [_format_number(a) for a in raw_answer]
        raw_answer = raw_answer[0]
    if isinstance(raw_answer, (int, float)) and not isinstance(raw_answer, bool):
        answer = _format_number(raw_answer)
    elif isinstance(raw_answer, str):
        if "####" in raw_answer:
            try:
                answer = gsm8k_gold(raw_answer)
            except ValueError as exc:
                raise DatasetError(f"{where}: field {af!r}: {exc}") from None
            meta["solution"] = raw_answer
        else:
            answer = raw_answer.strip()
        if not answer:
            raise DatasetError(f"{where}: field {af!r} is empty")
    else:
        raise DatasetError(f"{where}: field {af!r} must be a string or a number")
    id_field = mapping.get("id") if mapping else None
    raw_id = record.get(id_field) if id_field else next((record[k] for k in _ID_FIELDS if k in record), None)
    ex_id = str(raw_id) if raw_id not in (None, "") else place
    return Example(id=ex_id, question=question.strip(), answer=answer, source=where, meta=meta)


def _read_file(path: Path, mapping: Mapping[str, str]) -> list[Example]:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text ({exc.reason})") from None
    records: list[tuple[str, str, Any]] = []  # (where, place, record)
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON list (HotpotQA ships this way)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        records = [(f"{name}[{i}]", f"item-{i}", r) for i, r in enumerate(data)]
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"{name}:{lineno}", f"line-{lineno}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{name}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not records:
        raise DatasetError(f"{name}: no examples found")
    first = records[0][2]
    fmt = "mapped" if mapping else (_detect(first) if isinstance(first, dict) else "unknown")
    if fmt == "unknown":
        fields = ", ".join(sorted(first)) if isinstance(first, dict) else type(first).__name__
        raise DatasetError(
            f"{records[0][0]}: cannot tell the format from fields ({fields}); expected question/answer "
            f"(GSM8K, HotpotQA) or input/target (PAL), or map fields with --field question=NAME --field answer=NAME"
        )
    return _own_examples([(_convert(rec, fmt, mapping, where, place), place) for where, place, rec in records])


def _own_examples(converted: list[tuple[Example, str]]) -> list[Example]:
    """Every record its own example: a repeated id gets its place appended, a repeated question is marked."""
    ids: set[str] = {ex.id for ex, _ in converted}
    seen_ids: set[str] = set()
    first_by_question: dict[str, str] = {}
    out = []
    for ex, place in converted:
        if ex.id in seen_ids:
            new_id, n = f"{ex.id}~{place}", 1
            while new_id in ids:
                n += 1
                new_id = f"{ex.id}~{place}~{n}"
            ex = replace(ex, id=new_id, meta={**ex.meta, "repeated_id": ex.id})
            ids.add(new_id)
        seen_ids.add(ex.id)
        first = first_by_question.setdefault(ex.question, ex.id)
        if first != ex.id:
            ex = replace(ex, meta={**ex.meta, "repeat_of": first})
        out.append(ex)
    return out


@dataclass(frozen=True)
class Repeats:
    """How a dataset repeats itself (every repeat is still its own example)."""

    questions: int  # examples whose question appeared earlier in the file
    other_gold: int  # ... of which the earlier occurrence has a different gold answer
    ids: int  # examples whose own id appeared earlier (renamed ``id~place``)

    def __str__(self) -> str:
        if not (self.questions or self.ids):
            return "no repeated questions"
        parts = []
        if self.questions:
            other = f", {self.other_gold} with a different gold" if self.other_gold else ""
            parts.append(f"{self.questions} repeat an earlier question{other}")
        if self.ids:
            parts.append(f"{self.ids} repeat an earlier id")
        return "; ".join(parts) + " (each line is scored as its own example)"


def repeats(examples: Iterable[Example]) -> Repeats:
    """Count repeated questions and ids among ``examples`` (as marked by the loader, or by comparing text)."""
    golds: dict[str, str] = {}
    questions = other = ids = 0
    for ex in examples:
        if ex.question in golds:
            questions += 1
            other += golds[ex.question] != ex.answer
        else:
            golds[ex.question] = ex.answer
        ids += "repeated_id" in ex.meta
    return Repeats(questions=questions, other_gold=other, ids=ids)


def shipped_path(name: str) -> Path:
    """Path of a shipped sample set (``gsm8k-sample`` or ``wiki-sample``)."""
    return Path(str(resources.files("agentkit.prompts") / "data" / SHIPPED[name]))


def shipped_datasets() -> dict[str, Path]:
    """Every shipped sample set: name -> file."""
    return {name: shipped_path(name) for name in SHIPPED}


_HF_SPEC = re.compile(
    r"^(?:hf:)?(?P<name>[A-Za-z0-9_.\-/]+?)(?::(?P<config>[\w.\-]+))?(?:@(?P<split>[\w.\-\[\]:%]+))?$"
)


def _load_hf(spec: str, mapping: Mapping[str, str]) -> list[Example]:
    m = _HF_SPEC.match(spec)
    if not m:
        raise DatasetError(f"dataset {spec!r}: not a file, not a shipped name ({', '.join(SHIPPED)})")
    name, config, split = m["name"], m["config"], m["split"] or "test"
    if name in ("gsm8k", "openai/gsm8k") and config is None:
        config = "main"
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise DatasetError(
            f"dataset {spec!r} is not a local file or a shipped name ({', '.join(SHIPPED)}), and loading it from "
            f"Hugging Face needs the 'datasets' library: pip install datasets (or pass a JSONL path)"
        ) from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # network, unknown name, offline mode: all end the same way for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"dataset {spec!r}: could not load from Hugging Face ({first}); check the name and your connection, "
            f"or download it and pass the JSONL path"
        ) from None
    rows = list(ds)
    if not rows:
        raise DatasetError(f"dataset {spec!r}: split {split!r} is empty")
    fmt = "mapped" if mapping else _detect(rows[0])
    if fmt == "unknown":
        raise DatasetError(f"dataset {spec!r}: cannot tell the format from fields ({', '.join(sorted(rows[0]))})")
    return _own_examples(
        [(_convert(r, fmt, mapping, f"{name}[{i}]", f"row-{i}"), f"row-{i}") for i, r in enumerate(rows)]
    )


def load_dataset(
    spec: str | Path,
    *,
    fields: Mapping[str, str] | Iterable[str] | None = None,
    limit: int | None = None,
) -> list[Example]:
    """Load examples from a path, a shipped name (``gsm8k-sample``, ``wiki-sample``) or a Hugging Face name.

    ``fields`` maps ``question``/``answer``/``id`` to the record's own field names (a dict or ``"a=b"``
    strings). ``limit`` keeps the first N examples. Raises :class:`DatasetError` with a one-line message.
    """
    mapping = dict(fields) if isinstance(fields, Mapping) else parse_field_mapping(fields or [])
    spec_str = str(spec)
    if spec_str in SHIPPED:
        examples = _read_file(shipped_path(spec_str), mapping)
    else:
        path = Path(spec_str).expanduser()
        if path.is_dir():
            raise DatasetError(f"dataset {spec_str!r} is a directory; pass a .jsonl or .json file")
        if path.exists():
            examples = _read_file(path, mapping)
        elif isinstance(spec, Path) or path.suffix in (".jsonl", ".json") or spec_str.startswith((".", "/", "~")):
            raise DatasetError(
                f"dataset file {spec_str!r} not found: pass an existing .jsonl/.json file or a shipped name "
                f"({', '.join(SHIPPED)})"
            )
        else:
            examples = _load_hf(spec_str, mapping)
    if limit is not None:
        if limit < 0:
            raise DatasetError(f"limit must be >= 0, got {limit}")
        examples = examples[:limit]
    return examples


def dataset_fingerprint(examples: Iterable[Example]) -> str:
    """A short hash of ids, questions and answers: identifies the data a run was made on."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.question, ex.answer]).encode("utf-8"))
    return h.hexdigest()[:16]
