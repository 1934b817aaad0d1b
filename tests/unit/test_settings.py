import os
import stat

import pytest

from mainspring.errors import ConfigError
from mainspring.settings import load_or_create_secret, load_settings


def test_defaults_need_no_services(tmp_path, monkeypatch):
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'mainspring.db'}"
    assert settings.uses_embedded_broker


def test_environment_overrides_the_toml_file(tmp_path, monkeypatch):
    config = tmp_path / "mainspring.toml"
    config.write_text('[mainspring]\ntimezone = "Asia/Shanghai"\nweb_port = 9000\n')
    monkeypatch.setenv("MAINSPRING_WEB_PORT", "9100")
    settings = load_settings(config)
    assert settings.timezone == "Asia/Shanghai"
    assert settings.web_port == 9100


def test_unknown_setting_in_file_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[mainspring]\nbroker = 'redis://x'\n")
    with pytest.raises(ConfigError, match="unknown setting 'broker'"):
        load_settings(config)


def test_bad_timezone_is_a_config_error(monkeypatch):
    monkeypatch.setenv("MAINSPRING_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="MAINSPRING_TIMEZONE"):
        load_settings()


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_secret_key_is_generated_once_and_private(tmp_path):
    first = load_or_create_secret(tmp_path)
    assert load_or_create_secret(tmp_path) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600


def test_embedded_broker_url_needs_mainspring_up(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="mainspring up"):
        _ = settings.resolved_broker_url
