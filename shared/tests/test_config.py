"""Settings come from KTRDR_* variables, typed, frozen, with typos and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.errors import ConfigError

pytestmark = pytest.mark.unit


class GatewaySettings(Settings, frozen=True, kw_only=True):
    ib_port: int = 4002
    ib_host: str = "127.0.0.1"
    api_key: Secret | None = None


def test_defaults_follow_the_contract() -> None:
    settings = GatewaySettings.from_env({})
    assert settings.nats_url == ("nats://127.0.0.1:4222",)
    assert settings.ib_port == 4002
    assert settings.api_key is None


def test_values_are_converted_and_lists_split() -> None:
    settings = GatewaySettings.from_env(
        {
            "KTRDR_NATS_URL": "nats://a:4222, nats://b:4222",
            "KTRDR_IB_PORT": "7497",
            "PATH": "/usr/bin",
            "OTHER_TOOL_X": "1",
        }
    )
    assert settings.nats_url == ("nats://a:4222", "nats://b:4222")
    assert settings.ib_port == 7497


def test_settings_are_frozen() -> None:
    settings = GatewaySettings.from_env({})
    with pytest.raises(AttributeError):
        settings.ib_port = 1  # type: ignore[misc]


def test_unknown_variable_is_refused_with_a_hint() -> None:
    with pytest.raises(
        ConfigError, match="unknown setting KTRDR_IB_PROT; did you mean KTRDR_IB_PORT"
    ):
        GatewaySettings.from_env({"KTRDR_IB_PROT": "4001"})


def test_variables_of_other_services_are_accepted() -> None:
    # One environment feeds every service (just up): the data dir is not the
    # gateway's, but it is a known ktrdr variable, so it is no typo.
    assert GatewaySettings.from_env({"KTRDR_DATA_DIR": "/srv"}).ib_port == 4002


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KTRDR_IB_PORT='seven': Expected `int`"):
        GatewaySettings.from_env({"KTRDR_IB_PORT": "seven"})


def test_secrets_are_masked_and_can_come_from_files(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cr3t-key\n")
    settings = GatewaySettings.from_env(
        {"KTRDR_API_KEY_FILE": str(key_file), "KTRDR_NATS_PASSWORD": "hunter2"}
    )
    assert settings.api_key is not None and settings.api_key.reveal() == "s3cr3t-key"
    assert settings.nats_password == Secret("hunter2")
    shown = repr(settings) + str(settings)
    assert "s3cr3t" not in shown and "hunter2" not in shown
    assert "********" in shown


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KTRDR_API_KEY_FILE: cannot read"):
        GatewaySettings.from_env({"KTRDR_API_KEY_FILE": str(tmp_path / "absent")})
