"""Deploy errors that need no real server: invalid names fail before any upload; a dead host, a host that is not
Ollama and a server refusing to create the model are named in a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lingoforge.backends.ollama import ollama_host
from lingoforge.deploy import DeployError, deploy, find_export, validate_name


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
def test_ollama_host(given: str, url: str) -> None:
    assert ollama_host(given) == url


def test_missing_export_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="lingoforge export"):
        find_export(tmp_path)


def test_unreachable_server_names_the_host(tiny_run: Path, tiny_export: dict) -> None:
    with pytest.raises(DeployError, match=r"cannot reach the Ollama server at http://127\.0\.0\.1:9"):
        deploy(tiny_run, "tickets", host="127.0.0.1:9")


class _FakeServer:
    """A local HTTP server answering like a broken or foreign server would (a real Ollama cannot be made to
    say "disk full" on demand): ``routes`` maps (method, path) to (status, body); anything else is a 404 page."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, str]]) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = "/api/blobs/" if self.path.startswith("/api/blobs/") else self.path
                status, body = routes.get((self.command, path), (404, "<html>not found</html>"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body.encode())

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> _FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


_TAGS = {("GET", "/api/tags"): (200, '{"models": []}'), ("HEAD", "/api/blobs/"): (200, "")}


def test_a_host_that_is_not_ollama_is_named(tiny_run: Path, tiny_export: dict) -> None:
    with _FakeServer({("GET", "/"): (200, "<html>intranet</html>")}) as server:
        with pytest.raises(DeployError, match=rf"{server.url} does not answer like an Ollama server"):
            deploy(tiny_run, "tickets", host=server.url)
    with _FakeServer({("GET", "/api/tags"): (200, "<html>login page</html>")}) as server:
        with pytest.raises(DeployError, match="does not answer like an Ollama server"):
            deploy(tiny_run, "tickets", host=server.url)
    page = "<html><body>" + "<p>not here</p>\n" * 400 + "</body></html>"
    with _FakeServer({("GET", "/"): (404, page)}) as server:
        with pytest.raises(DeployError) as refused:
            deploy(tiny_run, "tickets", host=server.url)
    assert len(str(refused.value)) < 400 and "\n" not in str(refused.value)  # a line, not the whole page


@pytest.mark.parametrize(("status", "error"), [(500, "disk full"), (400, "invalid model name")])
def test_server_errors_on_create_are_reported(tiny_run: Path, tiny_export: dict, status: int,
                                             error: str) -> None:
    routes = {**_TAGS, ("POST", "/api/create"): (status, json.dumps({"error": error}))}
    with _FakeServer(routes) as server:
        with pytest.raises(DeployError, match=rf"refused to create tickets: {error} \(HTTP {status}\)"):
            deploy(tiny_run, "tickets", host=server.url)


def test_port_out_of_range_is_a_clear_error(tiny_run: Path, tiny_export: dict) -> None:
    with pytest.raises(DeployError, match="cannot reach the Ollama server at http://127.0.0.1:70000"):
        deploy(tiny_run, "tickets", host="127.0.0.1:70000")
