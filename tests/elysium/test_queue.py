"""Where the broker is: one Redis URL, or the sentinels that name its primary."""

from __future__ import annotations

import pytest

from elysium.errors import ConfigError
from elysium.queue import broker_url, celery_config
from elysium.settings import Settings


def test_without_sentinels_the_broker_is_the_redis_url() -> None:
    settings = Settings.from_env({"ELYSIUM_REDIS_URL": "redis://10.0.0.5:6379/3"})

    assert broker_url(settings) == "redis://10.0.0.5:6379/3"
    assert "master_name" not in celery_config(settings)["broker_transport_options"]


def test_sentinels_make_a_kombu_sentinel_url_with_the_master_name_and_database() -> None:
    settings = Settings.from_env(
        {
            "ELYSIUM_REDIS_URL": "redis://ignored:6379/3",
            "ELYSIUM_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379,10.0.0.3:26380",
            "ELYSIUM_REDIS_MASTER_NAME": "ely",
        }
    )

    assert broker_url(settings) == (
        "sentinel://10.0.0.1:26379/3;sentinel://10.0.0.2:26379/3;sentinel://10.0.0.3:26380/3"
    )
    assert celery_config(settings)["broker_transport_options"]["master_name"] == "ely"
    assert settings.sentinel_addresses[2] == ("10.0.0.3", 26380)


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.1:x", ":26379"])
def test_a_sentinel_without_host_and_port_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"ELYSIUM_REDIS_SENTINELS": bad})
    assert "ELYSIUM_REDIS_SENTINELS" in str(err.value)
