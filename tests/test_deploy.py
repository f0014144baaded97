"""Deploy errors that need no server: invalid names fail before any upload, a dead host is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from lingoforge.deploy import DeployError, deploy, find_export, normalize_host, validate_name
from test_export import tiny_export, tiny_run  # noqa: F401  (session fixtures shared with the export tests)


@pytest.mark.parametrize("name", ["lingoforge-tickets", "team/tickets:v1", "tickets_2.5:q5_k_m"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-tickets", "tickets:", "a b", "team.x/tickets", "t" * 81, "x:y:z"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(DeployError, match="invalid Ollama model name"):
        validate_name(name)


def test_invalid_name_fails_before_touching_anything(tmp_path: Path) -> None:
    # The export folder does not exist and the host is dead: the name error must still come first.
    with pytest.raises(DeployError, match="invalid Ollama model name"):
        deploy(tmp_path / "missing", "bad name", host="http://127.0.0.1:9")


@pytest.mark.parametrize(("given", "url"), [
    ("127.0.0.1:11555", "http://127.0.0.1:11555"),
    ("http://example.org", "http://example.org:11434"),
    ("https://ollama.internal:8443/", "https://ollama.internal:8443"),
])
def test_normalize_host(given: str, url: str) -> None:
    assert normalize_host(given) == url


def test_missing_export_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="lingoforge export"):
        find_export(tmp_path)


def test_unreachable_server_names_the_host(tiny_run: Path, tiny_export: dict) -> None:  # noqa: F811
    with pytest.raises(DeployError, match=r"cannot reach the Ollama server at http://127\.0\.0\.1:9"):
        deploy(tiny_run, "tickets", host="127.0.0.1:9")
