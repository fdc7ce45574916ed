"""The configuration a Spark session starts with, read without starting one."""

from __future__ import annotations

import pytest

from modelwarden.errors import InputError
from modelwarden.store.engines import spark_conf


def test_local_sessions_bind_to_loopback_and_keep_spark_s_default_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MODELWARDEN_SPARK_DRIVER_MEMORY", raising=False)
    conf = spark_conf("local[2]")
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "spark.driver.memory" not in conf
    assert "spark.driver.host" not in spark_conf("spark://cluster:7077")


def test_the_driver_memory_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELWARDEN_SPARK_DRIVER_MEMORY", "8g")
    assert spark_conf("local[2]")["spark.driver.memory"] == "8g"
    monkeypatch.setenv("MODELWARDEN_SPARK_DRIVER_MEMORY", "lots")
    with pytest.raises(InputError) as err:
        spark_conf("local[2]")
    assert err.value.field == "MODELWARDEN_SPARK_DRIVER_MEMORY"
    assert "'lots'" in str(err.value)
