"""Property-based tests of the prompt-file parser and the file-name sanitiser, and the prompt-file
cases of the bad-input sweep (wrong types, missing columns, duplicate names, non-UTF-8 bytes,
100,000 rows, very long prompts)."""

import csv
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiodiff.prompts import COLUMNS, MAX_NAME, PromptFileError, read_prompt_file, safe_name

SAFE = re.compile(r"[A-Za-z0-9_.-]+")


@given(st.text(max_size=300))
def test_safe_name_gives_a_plain_stem_inside_the_folder_or_refuses(name):
    try:
        stem = safe_name(name)
    except ValueError as err:
        assert repr(name) in str(err)
        return
    assert SAFE.fullmatch(stem) and not stem.startswith(".") and len(stem) <= MAX_NAME
    assert ".." not in name and "/" not in name and "\\" not in name
    out = Path("/out")
    assert (out / f"{stem}.wav").resolve().parent == out


cell = st.one_of(st.none(), st.text(max_size=40), st.integers(-10**20, 10**20),
                 st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.lists(st.integers(), max_size=2))
row = st.dictionaries(st.sampled_from([*COLUMNS, "extra"]), cell, max_size=8)


def check_parse(path: Path, n_rows: int, refusal: str | None = None) -> None:
    """A file is refused whole exactly when ``refusal`` (the expected reason) is given; otherwise
    every row becomes a request or a named row error."""
    if refusal is not None:
        with pytest.raises(PromptFileError, match=refusal):
            read_prompt_file(path, global_seed=7)
        return
    requests, errors = read_prompt_file(path, global_seed=7)
    rows = sorted([r.row for r in requests] + [e.row for e in errors])
    assert rows == list(range(1, n_rows + 1))
    stems = [stem.lower() for r in requests for stem in r.names]
    assert len(stems) == len(set(stems))
    for r in requests:
        assert r.label is not None or r.prompt is not None
        assert r.seconds is None or r.seconds > 0
        assert r.seed >= 0 and r.num >= 1
        assert all(SAFE.fullmatch(stem) for stem in r.names)
    for e in errors:
        assert e.reason and f"row {e.row}:" in str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(row, max_size=12))
def test_jsonl_rows_of_any_shape_become_requests_or_named_row_errors(tmp_path, rows):
    """One JSON line per row, whatever its keys and values: only a file with no line at all is refused."""
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    check_parse(path, len(rows), None if rows else "the file is empty")


HEADER_NAMES = ["label", "seconds", "seed", "name", "prompt", "colour", "size"]  # the last two are no column


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=4, unique=True).flatmap(
    lambda header: st.tuples(st.just(header), st.lists(st.lists(st.text(max_size=20), min_size=len(header),
                                                                  max_size=len(header)), max_size=12))))
def test_csv_rows_of_any_text_become_requests_or_named_row_errors(tmp_path, file):
    """Any header and any cells: refused whole only for a header naming no column or a file of no row."""
    header, cells = file
    path = tmp_path / "p.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(cells)
    lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    refusal = ("names none of the columns" if not set(header) & set(COLUMNS)
               else "holds no rows" if len(lines) == 1 else None)
    check_parse(path, len(lines) - 1, refusal)


@pytest.mark.parametrize("content,message", [
    (b"label,seconds\n\xff\xfe coin,1\n", "not UTF-8"),
    (b"colour,size\nred,2\n", "names none of the columns"),
    (b"", "the file is empty"),
    (b"label,seconds\n", "holds no rows"),
])
def test_unusable_prompt_files_are_refused_as_a_whole(tmp_path, content, message):
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    with pytest.raises(PromptFileError, match=message):
        read_prompt_file(path)


def test_bad_rows_each_get_their_own_reason(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"label": "coin", "name": "a"}, {"label": "coin", "name": "A"}, {"label": "coin", "seconds": "long"},
            {"label": "coin", "seed": 1.5}, {"label": "coin", "num": 0}, {"prompt": "x" * 600},
            {"label": "coin", "steps": "many"}, {"seconds": 1}, "not an object"]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    requests, errors = read_prompt_file(path)
    assert [r.row for r in requests] == [1]
    reasons = {e.row: e.reason for e in errors}
    assert "already used by row 1" in reasons[2]
    assert "seconds must be a number" in reasons[3]
    assert "seed must be an integer" in reasons[4]
    assert "num must be an integer" in reasons[5]
    assert "600 characters long" in reasons[6]
    assert "steps must be an integer" in reasons[7]
    assert "needs a label or a prompt" in reasons[8]
    assert "not a JSON object" in reasons[9]
    assert "invalid JSON" in reasons[10]


def test_a_hundred_thousand_rows_parse_with_unique_names(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "seconds"])
        writer.writerows([f"coin pickup number {i % 7}", 0.5] for i in range(100_000))
    requests, errors = read_prompt_file(path)
    assert not errors and len(requests) == 100_000
    assert len({r.name for r in requests}) == 100_000
    assert len({r.seed for r in requests}) > 99_000
