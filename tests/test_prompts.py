import json

import pytest

from audiodiff.pipeline import SamplerSettings
from audiodiff.prompts import PromptFileError, derived_seed, read_prompt_file, safe_name
from audiodiff.rendering import row_sampler


def test_csv_rows_are_parsed_with_derived_seeds(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("label,seconds,seed,name\nkick,0.5,3,my kick\ncoin,,,\n")
    requests, errors = read_prompt_file(path, global_seed=11)
    assert errors == []
    first, second = requests
    assert (first.label, first.seconds, first.seed, first.name) == ("kick", 0.5, 3, "my_kick")
    assert second.seconds is None and second.seed == derived_seed(11, 2) and second.name == "0002_coin"


def test_bad_rows_are_reported_and_the_rest_kept(tmp_path):
    rows = [
        {"label": "kick", "name": "../../etc/x"},
        {"label": "kick", "seconds": -1},
        {"label": "kick", "seconds": "long"},
        {"label": "kick", "seed": 1.5},
        {"seconds": 1.0},
        {"label": "kick", "name": "dup"},
        {"label": "snare", "name": "dup"},
        {"label": "snare", "name": "fine"},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    requests, errors = read_prompt_file(path)
    assert [r.name for r in requests] == ["dup", "fine"]
    reasons = {e.row: e.reason for e in errors}
    assert "not a plain file name" in reasons[1]
    assert "positive" in reasons[2] and "number" in reasons[3] and "integer" in reasons[4]
    assert "label or a prompt" in reasons[5] and "already used by row 6" in reasons[7]
    assert "invalid JSON" in reasons[9]


def test_whole_file_errors(tmp_path):
    with pytest.raises(PromptFileError, match="no such prompt file"):
        read_prompt_file(tmp_path / "none.csv")
    bad = tmp_path / "p.txt"
    bad.write_text("label\nkick\n")
    with pytest.raises(PromptFileError, match="use .csv or .jsonl"):
        read_prompt_file(bad)
    latin = tmp_path / "p.csv"
    latin.write_bytes(b"label\n\xe9t\xe9\n")
    with pytest.raises(PromptFileError, match="UTF-8"):
        read_prompt_file(latin)
    wrong = tmp_path / "q.csv"
    wrong.write_text("colour,size\nred,2\n")
    with pytest.raises(PromptFileError, match="none of the columns"):
        read_prompt_file(wrong)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "~root", "a\\b", "...", "  "])
def test_safe_name_refuses_escapes_and_empties(name):
    with pytest.raises(ValueError):
        safe_name(name)


def test_safe_name_keeps_plain_names():
    assert safe_name("Coin pickup #2") == "Coin_pickup_2"
    assert safe_name("laser.v2") == "laser.v2"


def test_variations_and_row_sampler_settings(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("label,name,num,seed,sampler,steps,guidance,negative_prompt\n"
                    "coin,c,3,5,heun,12,2.5,muffled\n"
                    "kick,k,0,,,,,\n"
                    "kick,c_2,,,,,,\n"
                    "kick,g,,,,,loud,\n"
                    "kick,s,,,,1.5,,\n")
    requests, errors = read_prompt_file(path)
    (coin,) = requests
    assert coin.names == ["c_1", "c_2", "c_3"] and coin.seed == 5 and coin.negative_prompt == "muffled"
    assert coin.sampler == {"sampler": "heun", "steps": 12, "guidance": 2.5}
    reasons = {e.row: e.reason for e in errors}
    assert "num must be an integer from 1 to 100" in reasons[2]
    assert "'c_2' is already used by row 1" in reasons[3]
    assert "guidance must be a number" in reasons[4] and "steps must be an integer" in reasons[5]


def test_a_row_naming_another_sampler_keeps_the_base_guidance():
    base = SamplerSettings("dpmpp_2m_sde", 20, "karras", guidance=2.0)
    row = row_sampler(base, {"sampler": "heun", "steps": 12})
    assert (row.name, row.steps, row.guidance) == ("heun", 12, 2.0)
    assert row.schedule == SamplerSettings.preset("heun").schedule
    assert row_sampler(base, {"sampler": "heun", "guidance": 1.0}).guidance == 1.0
    assert row_sampler(base, {"steps": 8}) == SamplerSettings("dpmpp_2m_sde", 8, "karras", guidance=2.0)


def test_one_request_from_the_command_line_is_checked_like_a_row():
    from audiodiff.prompts import command_line_request

    request = command_line_request({"prompt": "coin pickup", "label": "coin", "num": 3}, seed=7)
    assert (request.prompt, request.label, request.seed, request.num) == ("coin pickup", "coin", 7, 3)
    assert request.names == ["coin-pickup_1", "coin-pickup_2", "coin-pickup_3"]
    assert command_line_request({"label": "kick"}, seed=0).names == ["kick"]
    with pytest.raises(PromptFileError, match="num must be an integer from 1 to 100, got 0"):
        command_line_request({"label": "kick", "num": 0}, seed=0)
    with pytest.raises(PromptFileError, match="needs a label or a prompt"):
        command_line_request({"num": 2}, seed=0)
