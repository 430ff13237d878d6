"""The randomuser client against a local fake HTTP server (http.server in a thread)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from userstream.ingest.sources import build_source
from userstream.ingest.sources.randomuser import (
    RandomUserClient,
    RandomUserError,
    RandomUserSource,
    RateLimiter,
)
from userstream.ingest.sources.synthetic import generate_user
from userstream.settings import load_settings


class FakeApi:
    """Answers like randomuser.me; ``script`` is a queue of failures to serve first."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.times: list[float] = []
        self.script: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(handler.path).query)
        with self.lock:
            self.requests.append(query)
            self.times.append(time.monotonic())
            step = self.script.pop(0) if self.script else ("ok", None)
        kind, arg = step
        if kind == "status":
            handler.send_response(int(arg))  # type: ignore[call-overload]
            handler.send_header("Retry-After", "0")
            handler.end_headers()
            handler.wfile.write(b"busy")
            return
        if kind == "sleep":
            time.sleep(float(arg))  # type: ignore[arg-type]
        if kind == "error_body":
            body = json.dumps({"error": "Uh oh, something has gone wrong."}).encode()
        else:
            results, page, seed = int(query["results"][0]), int(query["page"][0]), query["seed"][0]
            users = [generate_user(hash(seed) % 1000, (page - 1) * results + i) for i in range(results)]
            body = json.dumps(
                {"results": users, "info": {"seed": seed, "results": results, "page": page, "version": "1.4"}}
            ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, str]]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/api/"
    server.shutdown()
    server.server_close()


def _client(url: str, **kw: object) -> RandomUserClient:
    options: dict = {"timeout_s": 2.0, "max_retries": 3, "backoff_s": 0.01, "requests_per_second": 1000.0}
    options.update(kw)
    return RandomUserClient(url, **options)


def test_pages_many_users_per_request(api) -> None:
    fake, url = api
    source = RandomUserSource(_client(url), seed="abc", nationalities=["US", "GB"])
    batches = list(source.batches(records=2500, batch_size=1000))
    assert [len(b.documents) for b in batches] == [1000, 1000, 500]
    assert len(fake.requests) == 3  # one request per page, never one per record
    assert [q["page"] for q in fake.requests] == [["1"], ["2"], ["3"]]
    assert all(q["results"] == ["1000"] and q["seed"] == ["abc"] for q in fake.requests)
    assert fake.requests[0]["nat"] == ["us,gb"]
    assert batches[0].batch_id == "randomuser:seed=abc:nat=US,GB:page=1:size=1000"
    assert batches[0].source == "randomuser"


def test_at_most_5000_per_request(api) -> None:
    fake, url = api
    # the fake builds 5000 users per answer: on a loaded machine that can outlast the 2 s default of
    # _client, and a timeout's retry would be counted as a request
    client = _client(url, timeout_s=60.0)
    list(RandomUserSource(client, seed="s").batches(records=6000, batch_size=10_000))
    assert [q["results"] for q in fake.requests] == [["5000"], ["5000"]]
    with pytest.raises(ValueError):
        _client(url).fetch_page(results=5001, page=1, seed="s")


@pytest.mark.parametrize("failure", [("status", 429), ("status", 503), ("status", 500), ("error_body", None)])
def test_retries_transient_failures(api, failure) -> None:
    fake, url = api
    fake.script = [failure, failure]
    client = _client(url)
    body = client.fetch_page(results=3, page=1, seed="s")
    assert len(body["results"]) == 3
    assert client.requests_made == 3
    assert client.retries_made == 2


def test_retries_timeouts(api) -> None:
    fake, url = api
    fake.script = [("sleep", 1.0)]
    client = _client(url, timeout_s=0.3)
    body = client.fetch_page(results=2, page=1, seed="s")
    assert len(body["results"]) == 2
    assert client.retries_made == 1


def test_gives_up_after_max_retries(api) -> None:
    fake, url = api
    fake.script = [("status", 503)] * 10
    client = _client(url, max_retries=2)
    with pytest.raises(RandomUserError, match="after 3 attempts: HTTP 503"):
        client.fetch_page(results=2, page=1, seed="s")
    assert len(fake.requests) == 3


def test_client_errors_are_not_retried(api) -> None:
    fake, url = api
    fake.script = [("status", 404)]
    with pytest.raises(RandomUserError, match="HTTP 404"):
        _client(url).fetch_page(results=2, page=1, seed="s")
    assert len(fake.requests) == 1


def test_backoff_grows_exponentially() -> None:
    delays: list[float] = []
    client = RandomUserClient("http://127.0.0.1:9/", backoff_s=0.5, max_backoff_s=3.0, sleep=delays.append)
    assert [client._backoff(attempt, None) for attempt in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert client._backoff(0, "2") == 2.0


def test_rate_limit_spaces_requests(api) -> None:
    fake, url = api
    client = _client(url, requests_per_second=10.0)
    for page in (1, 2, 3, 4):
        client.fetch_page(results=1, page=page, seed="s")
    gaps = [b - a for a, b in zip(fake.times, fake.times[1:], strict=False)]
    assert min(gaps) >= 0.09


def test_rate_limiter_with_a_fake_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2.0, clock=lambda: now[0], sleep=sleep)
    limiter.acquire()
    limiter.acquire()
    limiter.acquire()
    assert slept == [0.5, 0.5]


def test_built_from_settings(api) -> None:
    _, url = api
    settings = load_settings(
        randomuser_url=url,
        randomuser_seed="fixed",
        randomuser_nationalities="de,fr",
        randomuser_backoff_s=0.2,
    )
    source = build_source(settings, "randomuser")
    assert isinstance(source, RandomUserSource)
    assert source.seed == "fixed"
    assert source.nationalities == ["DE", "FR"]
    assert source.client.backoff_s == 0.2
    batch = next(iter(source.batches(records=5, batch_size=5)))
    assert len(batch.documents) == 5
