"""Client settings: which environment variables name the server, and which do not."""

from __future__ import annotations

import pytest

from e2h.settings import SERVER_URL, ClientSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("E2H_SERVER_URL", "E2H_SERVER", "SERVER_URL", "E2H_API_TOKEN", "API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_the_prefixed_variables_name_the_server_and_the_command_line_wins(monkeypatch) -> None:
    assert ClientSettings().server_url == SERVER_URL
    monkeypatch.setenv("E2H_SERVER", "http://old-name:1")
    assert ClientSettings().server_url == "http://old-name:1"
    monkeypatch.setenv("E2H_SERVER_URL", "http://new-name:2")
    monkeypatch.setenv("E2H_API_TOKEN", "tok")
    assert (ClientSettings().server_url, ClientSettings().api_token) == ("http://new-name:2", "tok")
    assert ClientSettings.resolve("http://flag:3", "flag-token").model_dump() == {
        "server_url": "http://flag:3", "api_token": "flag-token"}


def test_other_programs_variables_and_empty_values_do_not_redirect_the_client(monkeypatch) -> None:
    monkeypatch.setenv("SERVER_URL", "http://someone-else:1")  # not ours: never sent our token
    monkeypatch.setenv("API_TOKEN", "theirs")
    assert (ClientSettings().server_url, ClientSettings().api_token) == (SERVER_URL, None)
    monkeypatch.setenv("E2H_SERVER_URL", "")
    monkeypatch.setenv("E2H_API_TOKEN", "")
    assert (ClientSettings().server_url, ClientSettings().api_token) == (SERVER_URL, None)
