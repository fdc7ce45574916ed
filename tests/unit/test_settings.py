"""Settings: given values, then MODELWARDEN_* variables, then modelwarden.toml, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelwarden.errors import InputError
from modelwarden.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (
        "MODELWARDEN_DATA",
        "MODELWARDEN_DATA_DIR",
        "MODELWARDEN_CONFIG",
        "MODELWARDEN_EMBEDDER",
        "MODELWARDEN_EMBED_THREADS",
        "MODELWARDEN_STATE_URL",
        "MODELWARDEN_REPORT_SCHEDULE",
        "MODELWARDEN_REPORT_TIMEZONE",
        "MODELWARDEN_REPORT_DELIVERY",
        "MODELWARDEN_PUBLIC_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_and_the_state_url_follow_the_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env()
    assert s.data_dir == Path("./warden-data") and s.embedder == "minilm"
    assert s.state_url == "sqlite:///warden-data/state.db"
    s = Settings.from_env(tmp_path / "d", embedder="hashing")
    assert s.state_url == f"sqlite:///{tmp_path / 'd' / 'state.db'}"
    assert s.embedder == "hashing"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELWARDEN_DATA", str(tmp_path / "env-data"))
    monkeypatch.setenv("MODELWARDEN_EMBED_THREADS", "3")
    monkeypatch.setenv("MODELWARDEN_STATE_URL", "postgresql+psycopg://w:pw@db/warden")
    s = Settings.from_env()
    assert (s.data_dir, s.embed_threads) == (tmp_path / "env-data", 3)
    assert s.state_url == "postgresql+psycopg://w:pw@db/warden"
    # A value given in code (a flag) wins over the environment.
    assert Settings.from_env(tmp_path / "flag").data_dir == tmp_path / "flag"


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELWARDEN_EMBED_THREADS", "many")
    with pytest.raises(InputError) as err:
        Settings.from_env()
    assert err.value.field == "embed_threads"


def test_toml_in_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "modelwarden.toml").write_text(
        'data_dir = "/srv/warden"\nembedder = "hashing"\n'
        'state_url = "postgresql+psycopg://w:pw@db/warden"\n'
    )
    s = Settings.from_env()
    assert (s.data_dir, s.embedder) == (Path("/srv/warden"), "hashing")
    assert s.state_url == "postgresql+psycopg://w:pw@db/warden"
    # The environment wins over the file.
    monkeypatch.setenv("MODELWARDEN_EMBEDDER", "minilm")
    assert Settings.from_env().embedder == "minilm"


def test_toml_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "modelwarden.toml").write_text("embed_batch_size = 16\n")
    s = Settings.from_env(data)
    assert s.embed_batch_size == 16 and s.state_url == f"sqlite:///{data / 'state.db'}"


def test_toml_named_by_modelwarden_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("embed_threads = 2\n")
    (tmp_path / "modelwarden.toml").write_text("embed_threads = 5\n")
    monkeypatch.setenv("MODELWARDEN_CONFIG", str(cfg))
    assert Settings.from_env().embed_threads == 2
    monkeypatch.setenv("MODELWARDEN_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match=r"missing\.toml: no such file") as err:
        Settings.from_env()
    assert err.value.field == "MODELWARDEN_CONFIG"


def test_weekly_pack_settings_from_the_environment_and_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "modelwarden.toml").write_text(
        'report_schedule = "FRI 17:30"\nreport_timezone = "Europe/Berlin"\n'
        'report_delivery = ["smtp://mail:25/lead@example.com"]\n'
    )
    s = Settings.from_env()
    assert (s.report_schedule, s.report_timezone) == ("FRI 17:30", "Europe/Berlin")
    assert s.report_delivery == ["smtp://mail:25/lead@example.com"]
    assert s.public_url == "http://127.0.0.1:8400"
    monkeypatch.setenv("MODELWARDEN_REPORT_DELIVERY", '["https://hooks.example/x"]')
    monkeypatch.setenv("MODELWARDEN_PUBLIC_URL", "https://warden.example")
    s = Settings.from_env()
    assert s.report_delivery == ["https://hooks.example/x"]
    assert s.public_url == "https://warden.example"
    # A list that is not JSON is a clear error naming the setting, not a traceback.
    monkeypatch.setenv("MODELWARDEN_REPORT_DELIVERY", "smtp://mail/lead@example.com")
    with pytest.raises(InputError) as err:
        Settings.from_env()
    assert err.value.field == "report_delivery" and "JSON" in err.value.message
