"""feeds.yaml loading: the shipped file is valid, and mistakes name the file, line and field."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import ConfigError, load_config
from monitor.domain import parse_duration

from .conftest import ROOT


def test_shipped_feeds_yaml_is_valid():
    config = load_config(ROOT / "feeds.yaml")
    assert 25 <= len(config.feeds) <= 40
    assert config.topics[0].name == "china-surveillance-bans"
    assert all(feed.interval >= 60 for feed in config.feeds)


def write(tmp_path, text: str):
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


TOPIC = "topics:\n  - name: t\n    description: d\n"


def test_a_malformed_feed_line_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "feeds:\n"
        "  - name: Fine\n"
        "    url: https://example.org/rss\n"
        "  - name: Broken\n"
        "    url: not-a-url\n"
        "    interval: 30m\n" + TOPIC,
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert f"{path}:5: feeds.1.url" in message and "not an http(s) URL" in message


def test_bad_interval_and_unknown_field(tmp_path):
    path = write(
        tmp_path,
        "feeds:\n  - name: A\n    url: https://a.org/rss\n    interval: soon\n    colour: red\n" + TOPIC,
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert f"{path}:4: feeds.0.interval" in message
    assert f"{path}:5: feeds.0.colour" in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "feeds:\n  - name: A\n    url: [unclosed\n" + TOPIC)
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


def test_duplicate_feed_names_and_missing_topics(tmp_path):
    path = write(tmp_path, "feeds:\n  - {name: A, url: 'https://a.org'}\n  - {name: A, url: 'https://b.org'}\n" + TOPIC)
    with pytest.raises(ConfigError, match=rf"{path}:3: feeds.1.name: two feeds are named 'A'"):
        load_config(path)
    with pytest.raises(ConfigError, match="topics"):
        load_config(write(tmp_path, "feeds: []\n"))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_example_files_are_read_and_missing_ones_skipped(tmp_path, caplog):
    (tmp_path / "ex.txt").write_text("an example article", encoding="utf-8")
    path = write(tmp_path, "topics:\n  - name: t\n    description: d\n    examples:\n      - file: ex.txt\n      - file: gone.txt\n      - inline text\n")
    topic = load_config(path).topics[0]
    assert topic.examples == ["an example article", "inline text"]
    assert "gone.txt" in caplog.text


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("1h30m", 5400), ("900", 900), (120, 120), ("2d", 172800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10s", "-5m", True, float("inf"), float("nan"), "99999999999d", "31d"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


FEED = "feeds:\n  - name: A\n    url: https://a.org/rss\n"


@pytest.mark.parametrize("interval", [".inf", ".nan", "99999999999d", "31d"])
def test_intervals_out_of_bounds_name_their_line(tmp_path, interval):
    path = write(tmp_path, FEED + f"    interval: {interval}\n" + TOPIC)
    with pytest.raises(ConfigError, match=rf"{path}:4: feeds.0.interval: an interval must be between 1 minute and 30 days"):
        load_config(path)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_bytes((FEED + "    tags: [caf\xe9]\n" + TOPIC).encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{path}:4: not UTF-8 text \(byte 0xe9\)"):
        load_config(path)


def test_a_key_given_twice_is_refused_at_its_second_line(tmp_path):
    path = write(tmp_path, FEED + "    url: https://b.org/rss\n" + TOPIC)
    with pytest.raises(ConfigError, match=rf"{path}:4: not valid YAML: the key 'url' is given twice \(first on line 3\)"):
        load_config(path)


def test_merge_keys_are_not_duplicates(tmp_path):
    path = write(tmp_path, "feeds:\n  - &a {name: A, url: 'https://a.org/rss', interval: 2h}\n  - <<: *a\n    name: B\n" + TOPIC)
    assert [(feed.name, feed.interval) for feed in load_config(path).feeds] == [("A", 7200), ("B", 7200)]


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(levels) + "\n" + FEED + TOPIC)
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML: aliases expand this to more than 100000 values"):
        load_config(path)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    path = write(tmp_path, "loop: &loop [1, *loop]\n" + FEED + TOPIC)
    with pytest.raises(ConfigError, match=rf"{path}:1: not valid YAML: an alias refers to the collection it is in"):
        load_config(path)


def test_small_aliases_still_work(tmp_path):
    path = write(tmp_path, "feeds:\n  - {name: A, url: 'https://a.org/rss', tags: &t [x, y]}\n  - {name: B, url: 'https://b.org/rss', tags: *t}\n" + TOPIC)
    assert [feed.tags for feed in load_config(path).feeds] == [["x", "y"], ["x", "y"]]


def test_configuration_errors_exit_2_from_the_cli(tmp_path):
    path = write(tmp_path, FEED + "    interval: .inf\n" + TOPIC)
    env = {"MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}"}
    result = CliRunner().invoke(app, ["status", "--config", str(path)], env=env)
    assert result.exit_code == 2
    assert f"{path}:4: feeds.0.interval" in result.output
