"""Prompt files for batch rendering: CSV or JSONL rows with ``label``, ``prompt``, ``seconds``,
``seed`` and ``name`` (each optional), parsed into checked :class:`RenderRequest` objects.

A bad row never stops the batch: it becomes a :class:`RowError` that names the row and the reason.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("label", "prompt", "seconds", "seed", "name")
MAX_NAME = 100
MAX_SEED = 2**63 - 1
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


class PromptFileError(ValueError):
    """The prompt file as a whole cannot be used."""


@dataclass(frozen=True)
class RenderRequest:
    """One clip to render. ``row`` is the 1-based data row in the file."""

    row: int
    name: str
    label: str | None
    prompt: str | None
    seconds: float | None
    seed: int


@dataclass(frozen=True)
class RowError:
    row: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


def safe_name(name: str) -> str:
    """A file stem made of letters, digits, '-', '_' and '.', never starting with a dot.

    Raises ValueError for names that try to leave the output folder (path separators, '..').
    """
    if "/" in name or "\\" in name or ".." in name or name.startswith("~"):
        raise ValueError(f"name {name!r} is not a plain file name (no '/', '\\', '..' or '~')")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")[:MAX_NAME]
    if not stem:
        raise ValueError(f"name {name!r} has no usable characters (letters, digits, '-', '_', '.')")
    return stem


def slug(text: str, limit: int = 40) -> str:
    """A short file-name-safe rendering of a label or prompt."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "clip"


def derived_seed(global_seed: int, row: int) -> int:
    """The seed of a row that gives none: a fixed function of the global seed and the row."""
    return (int(global_seed) * 1_000_003 + row * 7919) % (2**31 - 1)


def _read_rows(path: Path) -> list[dict]:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise PromptFileError(f"{path}: unknown prompt file type {path.suffix!r}; use .csv or .jsonl")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PromptFileError(f"{path}: no such prompt file") from None
    except UnicodeDecodeError as err:
        raise PromptFileError(f"{path}: not UTF-8 text ({err})") from None
    except OSError as err:
        raise PromptFileError(f"{path}: cannot read ({err})") from None
    if kind == "csv":
        reader = csv.DictReader(text.splitlines())
        fields = reader.fieldnames or []
        if not set(fields) & set(COLUMNS):
            raise PromptFileError(f"{path}: the header names none of the columns {', '.join(COLUMNS)} "
                                  f"(found {fields})")
        return [dict(r) for r in reader]
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append({"__error__": f"invalid JSON on line {i} ({err.msg})"})
            continue
        rows.append(obj if isinstance(obj, dict) else {"__error__": f"line {i} is not a JSON object"})
    return rows


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse_row(raw: dict, row: int, global_seed: int, taken: dict[str, int]) -> RenderRequest:
    if "__error__" in raw:
        raise ValueError(raw["__error__"])
    label = None if _blank(raw.get("label")) else str(raw["label"]).strip()
    prompt = None if _blank(raw.get("prompt")) else str(raw["prompt"]).strip()
    if label is None and prompt is None:
        raise ValueError("needs a label or a prompt")

    seconds = None
    if not _blank(raw.get("seconds")):
        try:
            seconds = float(raw["seconds"])
        except (TypeError, ValueError):
            raise ValueError(f"seconds must be a number, got {raw['seconds']!r}") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive number, got {raw['seconds']!r}")

    if _blank(raw.get("seed")):
        seed = derived_seed(global_seed, row)
    else:
        value = raw["seed"]
        try:
            seed = int(value) if not isinstance(value, float) or value.is_integer() else None
        except (TypeError, ValueError):
            seed = None
        if seed is None or isinstance(value, bool) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {value!r}")

    if _blank(raw.get("name")):
        name = f"{row:04d}_{slug(label or prompt)}"
    else:
        name = safe_name(str(raw["name"]))
    if name.lower() in taken:
        raise ValueError(f"name {name!r} is already used by row {taken[name.lower()]}")
    taken[name.lower()] = row
    return RenderRequest(row, name, label, prompt, seconds, seed)


def read_prompt_file(path: str | Path, global_seed: int = 0) -> tuple[list[RenderRequest], list[RowError]]:
    """Parse a CSV or JSONL prompt file into requests and per-row errors (rows are 1-based)."""
    path = Path(path)
    requests, errors = [], []
    taken: dict[str, int] = {}
    for row, raw in enumerate(_read_rows(path), 1):
        try:
            requests.append(_parse_row(raw, row, global_seed, taken))
        except ValueError as err:
            errors.append(RowError(row, str(err)))
    if not requests and not errors:
        raise PromptFileError(f"{path}: holds no rows")
    return requests, errors
