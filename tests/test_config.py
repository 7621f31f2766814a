"""Settings: defaults, the TOML file, the environment, and errors that name the key."""

from __future__ import annotations

import re

import pytest

from common.errors import ConfigError
from monitor.config import Settings, load_settings, reference_markdown, render_toml


def test_every_key_has_a_default_and_the_defaults_load():
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.slo.latency_threshold_ms == 100.0


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[kafka]\nbootstrap_servers = "file:9092"\ngroup_id = "from-file"\n'
                    '[detect]\nfalse_alarms_per_million = 0.5\n')
    env = {"MONITOR_KAFKA_BOOTSTRAP_SERVERS": "env:9092", "MONITOR_KAFKA_CREATE_TOPICS": "false",
           "MONITOR_KAFKA_MAX_BATCH_RECORDS": "1_000", "MONITOR_REDACT_FIELDS": "features.email, segment.ip",
           "MONITOR_CONFIG": "ignored: it names the file"}
    s = load_settings(path, environ=env, overrides={"kafka": {"group_id": "override"}})
    assert s.kafka.bootstrap_servers == "env:9092"
    assert s.kafka.group_id == "override"
    assert s.kafka.create_topics is False
    assert s.kafka.max_batch_records == 1000
    assert s.redact.fields == ["features.email", "segment.ip"]
    assert s.detect.false_alarms_per_million == 0.5


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[kafka]\nbootstrap_server = 'x'", {},
     re.escape("unknown key kafka.bootstrap_server (did you mean kafka.bootstrap_servers?)")),
    ("[kafak]\ngroup_id = 'x'", {}, r"unknown section \[kafak\] \(did you mean kafka\?\)"),
    ("", {"MONITOR_KAFKA_GROUPID": "x"}, "unknown key kafka.groupid .*in the environment"),
    ("", {"MONITOR_NOPE_X": "1"}, "unknown environment variable MONITOR_NOPE_X"),
    ("[kafka]\nmax_batch_records = 'many'", {}, "kafka.max_batch_records must be int, got 'many'"),
    ("", {"MONITOR_KAFKA_MAX_BATCH_RECORDS": "many"}, "kafka.max_batch_records must be int"),
    ("[kafka]\nmax_batch_records = 0", {}, "kafka.max_batch_records must be >= 1"),
    ("[kafka]\nauto_offset_reset = 'middle'", {}, "kafka.auto_offset_reset must be one of earliest, latest"),
    ("[kafka]\ncreate_topics = 'yes'", {}, "kafka.create_topics must be bool"),
    ("[detect]\ncheck_every = 600", {}, r"detect.check_every \(600\) must be <= detect.window_size"),
    ("[detect]\nsample_rate = 0", {}, r"detect.sample_rate must be >= 0.001; got 0"),
    ("", {"MONITOR_DETECT_SAMPLE_RATE": "1.5"}, r"detect.sample_rate must be <= 1; got 1.5"),
    ("[slo]\nshort_window = 5000", {}, r"slo.short_window \(5000\) must be <= slo.long_window"),
    ("[topics]\ndeadletter = 'monitor.tracking'", {}, "must differ from the input topics"),
    ("[kafka\n", {}, "not valid TOML"),
    ("[redact]\nkinds = ['email', 'passport']", {}, "redact.kinds has unknown 'passport'; choose from email"),
    ("", {"MONITOR_RETRAIN_SEVERE_KINDS": "data_drift,drift"}, "retrain.severe_kinds has unknown 'drift'"),
    ("[redact]\nfields = 'features.email'", {}, "redact.fields must be"),
    ("kafka = 3", {}, r"\[kafka\] must be a table"),
])
def test_bad_configuration_is_an_error_that_says_what_to_fix(text, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(toml_text=text, environ=env)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_rendered_settings_read_back_unchanged():
    original = load_settings(environ={}, overrides={"kafka": {"group_id": 'with "quotes"'},
                                                    "redact": {"fields": ["features.a"]}})
    assert load_settings(toml_text=render_toml(original), environ={}) == original
    assert load_settings(toml_text=render_toml(original, with_docs=False), environ={}) == original


def test_the_password_is_not_printed():
    settings = load_settings(environ={"MONITOR_KAFKA_SASL_PASSWORD": "hunter2"})
    assert "hunter2" not in render_toml(settings)


def test_reference_table_lists_every_key():
    table = reference_markdown()
    for section in ("kafka", "topics", "collect", "redact", "join", "detect", "slo", "store", "retrain", "http"):
        assert f"| `{section}." in table
    assert table.count("\n") + 1 == 2 + sum(len(vars(getattr(Settings(), s))) for s in vars(Settings()))
