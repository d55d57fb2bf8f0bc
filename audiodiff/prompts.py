"""Prompt files for batch rendering: CSV or JSONL rows with ``label``, ``prompt``,
``negative_prompt``, ``seconds``, ``seed``, ``name``, ``num`` and the per-row sampler settings
``sampler``, ``steps``, ``schedule``, ``guidance``, ``guidance_rescale`` (each optional), parsed
into checked :class:`RenderRequest` objects.

A bad row never stops the batch: it becomes a :class:`RowError` that names the row and the reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

SAMPLER_COLUMNS = {"sampler": str, "steps": int, "schedule": str, "guidance": float, "guidance_rescale": float}
COLUMNS = ("label", "prompt", "negative_prompt", "seconds", "seed", "name", "num", *SAMPLER_COLUMNS)
MAX_NAME = 100
MAX_NUM = 100  # variations of one row
MAX_PROMPT = 500  # characters; the prompt also goes into the WAV's INFO chunk, which holds about 2 KB
MAX_SEED = 2**63 - 1
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


class PromptFileError(ValueError):
    """The prompt file as a whole cannot be used."""


@dataclass(frozen=True)
class RenderRequest:
    """One row to render: ``num`` clips (variations), the i-th named ``names[i]`` with seed
    ``seed + i``. ``row`` is the 1-based data row in the file; ``sampler`` holds the row's own
    sampler settings (``sampler``, ``steps``, ``schedule``, ``guidance``, ``guidance_rescale``)."""

    row: int
    name: str
    label: str | None
    prompt: str | None
    seconds: float | None
    seed: int
    num: int = 1
    negative_prompt: str | None = None
    sampler: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """File stems of the variations: ``name`` alone, or ``name_1`` ... ``name_N``."""
        return [self.name] if self.num == 1 else [f"{self.name}_{i}" for i in range(1, self.num + 1)]


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
    if not text.strip():
        raise PromptFileError(f"{path}: the file is empty; give a header and one row per sound")
    if kind == "csv":
        # io.StringIO with newline="" keeps line breaks inside quoted cells, and does not split rows at
        # the other characters str.splitlines() treats as line ends (form feed, U+2028, ...).
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = reader.fieldnames or []
        if not set(fields) & set(COLUMNS):
            raise PromptFileError(f"{path}: the header names none of the columns {', '.join(COLUMNS)} "
                                  f"(found {fields})")
        return [dict(r) for r in reader]
    rows = []
    for i, line in enumerate(text.split("\n"), 1):
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
    negative = None if _blank(raw.get("negative_prompt")) else str(raw["negative_prompt"]).strip()
    if label is None and prompt is None:
        raise ValueError("needs a label or a prompt")
    for key, text in (("prompt", prompt), ("negative_prompt", negative)):
        if text is not None and len(text) > MAX_PROMPT:
            raise ValueError(f"{key} is {len(text)} characters long; the limit is {MAX_PROMPT}")

    seconds = None
    if not _blank(raw.get("seconds")):
        try:
            seconds = float(raw["seconds"])
        except (TypeError, ValueError):
            raise ValueError(f"seconds must be a number, got {raw['seconds']!r}") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive number, got {raw['seconds']!r}")

    num = 1 if _blank(raw.get("num")) else _integer(raw["num"], "num", 1, MAX_NUM)
    if _blank(raw.get("seed")):
        seed = derived_seed(global_seed, row)
    else:
        seed = _integer(raw["seed"], "seed", 0, MAX_SEED - num + 1)

    sampler = {}
    for key, kind in SAMPLER_COLUMNS.items():
        if _blank(raw.get(key)):
            continue
        value = raw[key]
        if kind is int:
            sampler[key] = _integer(value, key, 1, 10**6)
        elif kind is float:
            try:
                sampler[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be a number, got {value!r}") from None
        else:
            sampler[key] = str(value).strip()

    if _blank(raw.get("name")):
        name = f"{row:04d}_{slug(label or prompt)}"
    else:
        name = safe_name(str(raw["name"]))
    request = RenderRequest(row, name, label, prompt, seconds, seed, num, negative, sampler)
    for stem in request.names:
        if stem.lower() in taken:
            raise ValueError(f"name {stem!r} is already used by row {taken[stem.lower()]}")
    taken.update({stem.lower(): row for stem in request.names})
    return request


def _integer(value, key: str, low: int, high: int) -> int:
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or not low <= number <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return number


def command_line_request(fields: dict, seed: int) -> RenderRequest:
    """One request from keys given on the command line instead of a file (``prompt``, ``label``,
    ``negative_prompt``, ``num``, ``name``, ``seconds``), seeded with ``seed`` itself (clip i of it
    gets ``seed + i``, as ``generate(seed=seed, num=...)``). A bad value is a :class:`PromptFileError`."""
    if _blank(fields.get("name")) and not (_blank(fields.get("prompt")) and _blank(fields.get("label"))):
        fields = {**fields, "name": slug(str(fields.get("prompt") or fields["label"]))}
    try:
        return _parse_row({**fields, "seed": seed}, 1, seed, {})
    except ValueError as err:
        raise PromptFileError(str(err)) from None


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
