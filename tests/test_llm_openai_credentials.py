"""Every credential is a secret: keys in headers and passwords in base URLs never show."""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flashevolve_nb.llm.config import OpenAIConfig
from flashevolve_nb.llm.openai_backend import BackendError, OpenAIBackend
from flashevolve_nb.llm.protocol import RetryNotice
from flashevolve_nb.llm.retry import RetryPolicy

AUTH = "sk-header-0123456789-SECRET"
XKEY = "xk-0123456789-SECRET"
COOKIE = "cookie-0123456789-SECRET"
PASSWORD = "pw-0123456789-SECRET"
SECRETS = (AUTH, XKEY, COOKIE, PASSWORD)


class Echo(BaseHTTPRequestHandler):
    """A careless server: its error answers quote every header it got."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Echo.calls += 1
        status = 500 if Echo.calls == 1 else 400
        echoed = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        body = json.dumps({"error": {"message": f"bad request with {echoed}"}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_port() -> Iterator[int]:
    Echo.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.asyncio
async def test_keys_in_headers_and_urls_never_show(
    echo_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    notices: list[RetryNotice] = []
    backend = OpenAIBackend(
        model="m",
        base_url=f"http://user:{PASSWORD}@127.0.0.1:{echo_port}/v1",
        extra_headers={
            "Authorization": f"Bearer {AUTH}", "X-Api-Key": XKEY, "Cookie": f"session={COOKIE}",
        },
        retry=RetryPolicy(backoff=0.01),
        on_retry=notices.append,
    )  # fmt: skip
    with pytest.raises(BackendError) as err:
        await backend.chat([{"role": "user", "content": "hi"}])
    await backend.aclose()
    assert Echo.calls == 2 and notices  # the server was reached, echoed, and retried once
    assert "bad request with" in str(err.value)  # the server's words stay, its secrets go
    cfg = backend.config
    shown = [
        repr(cfg),
        str(cfg),
        repr(backend),
        str(err.value),
        err.value.cause,
        "".join(traceback.format_exception(err.value)),
        repr(err.value.__context__),
        repr(err.value.__cause__),
        *(repr(n) for n in notices),
        caplog.text,
    ]
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)
    for text in shown:
        for secret in SECRETS:
            assert secret not in text, text


def test_credential_headers_and_url_passwords_are_the_configs_secrets() -> None:
    cfg = OpenAIConfig(
        model="m",
        base_url="https://u:pw-SECRET@api.example/v1",
        api_key="k-SECRET",
        extra_headers={"api-key": "a-SECRET", "Proxy-Authorization": "Basic p-SECRET",
                       "X-Trace": "visible"},
    )  # fmt: skip
    text = "k-SECRET a-SECRET Basic p-SECRET pw-SECRET u visible"
    assert "SECRET" not in cfg.scrub(text) and "visible" in cfg.scrub(text)
    assert "SECRET" not in repr(cfg) and "X-Trace" in repr(cfg)


def test_a_stored_config_keeps_no_credential_header() -> None:
    from flashevolve_nb.store.codec import describe

    headers = {"X-Api-Key": "xk-SECRET", "api-key": "a-SECRET", "Cookie": "s=c-SECRET",
               "Proxy-Authorization": "Basic p-SECRET", "X-Trace": "visible"}  # fmt: skip
    stored = repr(describe({"llm": {"extra_headers": headers}}))
    assert "SECRET" not in stored and "visible" in stored
