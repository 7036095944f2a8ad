"""feeds.yaml loading: the shipped file is valid, and mistakes name the file, line and field."""

from __future__ import annotations

import pytest

from monitor.config import ConfigError, load_config, parse_duration

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
    with pytest.raises(ConfigError, match="two feeds are named 'A'"):
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


@pytest.mark.parametrize("text", ["soon", "10s", "-5m", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
