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


@pytest.mark.parametrize(("text", "env", "message"), [
    ('[retrain]\ntrigger_cron = "not a cron"', {}, "retrain.trigger_cron 'not a cron' is not a crontab expression"),
    ('[retrain]\ntrigger_cron = "0 25 * * mon"', {}, "retrain.trigger_cron .* is not a crontab expression"),
    ("[collect]\nmax_future_skew_s = nan", {}, "collect.max_future_skew_s must be a finite number, got nan"),
    ("[slo]\nburn_factor = inf", {}, "slo.burn_factor must be a finite number"),
    ("", {"MONITOR_DETECT_RATE_ODDS_RATIO": "NaN"}, "detect.rate_odds_ratio must be a finite number"),
    ("", {"MONITOR_JOIN_TTL_S": "-inf"}, "join.ttl_s must be a finite number"),
    ('[retrain]\nwebhook_url = "ftp:/x"', {}, "retrain.webhook_url 'ftp:/x' must be an http:// or https:// URL"),
    ('[retrain]\nwebhook_url = "https://"', {}, "must be an http:// or https:// URL with a host"),
    ('[retrain]\nwebhook_url = "http://h:99999/"', {}, "retrain.webhook_url .* is not a URL"),
    ('[http]\nhost = "999.1.1.1"', {}, "http.host '999.1.1.1' is neither an IP address nor a host name"),
    ('[http]\nhost = "bad host"', {}, "http.host 'bad host' is neither"),
    ('[http]\nhost = ""', {}, "http.host '' is neither"),
    ('[kafka]\nsasl_mechanism = "GSSAPI"', {},
     "kafka.sasl_mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ('[kafka]\nsecurity_protocol = "SASL_SSL"', {}, "SASL_SSL needs kafka.sasl_username and a password"),
    ('[kafka]\nsecurity_protocol = "SSL"\nssl_cafile = "/no/such/ca.pem"', {},
     "kafka.ssl_cafile /no/such/ca.pem does not exist or cannot be read"),
    ('[kafka]\nssl_cafile = "/etc/hostname"', {}, "kafka.ssl_cafile is set but kafka.security_protocol is PLAINTEXT"),
    ('[kafka]\nsasl_password_file = "/no/such/file"', {}, "kafka.sasl_password_file /no/such/file cannot be read"),
    ('[http]\ntoken_file = "/no/such/file"', {}, "http.token_file /no/such/file cannot be read"),
    ('[retrain]\nwebhook_secret_file = "/no/such/file"', {},
     "retrain.webhook_secret_file /no/such/file cannot be read"),
    ("", {"MONITOR_HTTP_TOKEN": "t", "MONITOR_HTTP_TOKEN_FILE": "/etc/hostname"}, "set http.token or http.token_file"),
])
def test_what_run_would_reject_later_is_rejected_by_validation(text, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(toml_text=text, environ=env)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "monitor-0.monitor.svc.",
                                  "node1"])
def test_addresses_and_host_names_are_valid_http_hosts(host):
    assert load_settings(environ={"MONITOR_HTTP_HOST": host}).http.host == host


def test_every_float_setting_refuses_nan_and_infinities():
    from monitor.config import sections  # noqa: PLC0415

    for section, cls in sections().items():
        for name, value in vars(cls()).items():
            if type(value) is not float:
                continue
            for bad in ("nan", "inf", "-inf"):
                with pytest.raises(ConfigError, match=f"{section}.{name} must be a finite number"):
                    load_settings(toml_text=f"[{section}]\n{name} = {bad}", environ={})


def test_secrets_come_from_files_and_are_never_rendered(tmp_path):
    password, token = tmp_path / "password", tmp_path / "token"
    password.write_text("  sasl-pw\n")
    token.write_text("tok-1\n")
    settings = load_settings(environ={"MONITOR_KAFKA_SASL_PASSWORD_FILE": str(password),
                                      "MONITOR_HTTP_TOKEN_FILE": str(token),
                                      "MONITOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                      "MONITOR_KAFKA_SASL_USERNAME": "monitor",
                                      "MONITOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"})
    assert settings.kafka.sasl_secret() == "sasl-pw" and settings.http.bearer_token() == "tok-1"
    settings = load_settings(environ={"MONITOR_KAFKA_SASL_PASSWORD": "pw-env", "MONITOR_HTTP_TOKEN": "tok-env",
                                      "MONITOR_STORE_URL": "postgresql+psycopg://mm:db-pw@db:5432/monitor"})
    text = render_toml(settings)
    for secret in ("pw-env", "tok-env", "db-pw"):
        assert secret not in text and secret not in repr(settings)
    assert 'sasl_password = "<set>"' in text and 'token = "<set>"' in text
    assert 'url = "postgresql+psycopg://mm:***@db:5432/monitor"' in text
