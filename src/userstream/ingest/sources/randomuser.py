"""Client of the randomuser.me API: many users per request, paged, rate-limited, retried.

One request returns up to 5000 users (``results``). Pages are requested with a fixed ``seed`` so
that page ``p`` is reproducible and its batch id is stable. Timeouts, connection errors, HTTP 429
and 5xx answers and the API's ``{"error": ...}`` bodies are retried with exponential backoff (a
429's ``Retry-After`` is honoured); other 4xx answers fail at once. A minimum interval between
requests enforces ``randomuser_requests_per_second``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from userstream.errors import UserstreamError
from userstream.ingest.sources import RawBatch, plan_pages
from userstream.settings import Settings

SOURCE_NAME = "randomuser"
MAX_RESULTS_PER_REQUEST = 5000
log = logging.getLogger(__name__)


class RandomUserError(UserstreamError):
    """The API could not be read after every retry, or answered with a non-retryable error."""


class RateLimiter:
    """At most ``rate`` acquisitions per second (a minimum interval between them)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


class RandomUserClient:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        requests_per_second: float = 1.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.limiter = RateLimiter(requests_per_second, sleep=sleep)
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "userstream-ingestion/0.1")
        self._sleep = sleep
        self.requests_made = 0
        self.retries_made = 0

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        return float(min(self.backoff_s * (2**attempt), self.max_backoff_s))

    def fetch_page(
        self, *, results: int, page: int, seed: str, nationalities: list[str] | None = None
    ) -> dict[str, Any]:
        """One page of ``results`` users: the decoded JSON body (``results`` and ``info``)."""
        if not 1 <= results <= MAX_RESULTS_PER_REQUEST:
            raise ValueError(f"results must be 1..{MAX_RESULTS_PER_REQUEST}, got {results}")
        params: dict[str, str | int] = {"results": results, "page": page, "seed": seed}
        if nationalities:
            params["nat"] = ",".join(nat.lower() for nat in nationalities)
        problem = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries_made += 1
            self.limiter.acquire()
            self.requests_made += 1
            retry_after = None
            try:
                response = self.session.get(self.url, params=params, timeout=self.timeout_s)
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    problem = f"HTTP {status}"
                    retry_after = response.headers.get("Retry-After")
                elif status >= 400:
                    raise RandomUserError(
                        f"randomuser API at {self.url} answered HTTP {status} for page {page}: "
                        f"{response.text[:200]!r}; check USERSTREAM_RANDOMUSER_URL and the parameters"
                    )
                else:
                    try:
                        body = response.json()
                    except ValueError:
                        problem = "body is not JSON"
                    else:
                        if isinstance(body, dict) and isinstance(body.get("results"), list):
                            return body
                        problem = f"unexpected body: {str(body)[:200]!r}"
            if attempt < self.max_retries:
                delay = self._backoff(attempt, retry_after)
                log.warning(
                    "randomuser page %d attempt %d failed (%s); retrying in %.1fs",
                    page,
                    attempt + 1,
                    problem,
                    delay,
                )
                self._sleep(delay)
        raise RandomUserError(
            f"randomuser API at {self.url} failed for page {page} after {self.max_retries + 1} attempts: "
            f"{problem}; raise USERSTREAM_RANDOMUSER_MAX_RETRIES or try again later"
        )


class RandomUserSource:
    name = SOURCE_NAME

    def __init__(
        self, client: RandomUserClient, seed: str | None = None, nationalities: list[str] | None = None
    ):
        self.client = client
        self.seed = seed or secrets.token_hex(8)
        self.nationalities = nationalities or []

    @classmethod
    def from_settings(cls, settings: Settings) -> RandomUserSource:
        client = RandomUserClient(
            settings.randomuser_url,
            timeout_s=settings.randomuser_timeout_s,
            max_retries=settings.randomuser_max_retries,
            backoff_s=settings.randomuser_backoff_s,
            requests_per_second=settings.randomuser_requests_per_second,
        )
        return cls(client, seed=settings.randomuser_seed, nationalities=settings.randomuser_nationalities)

    def batch_id(self, page: int, size: int) -> str:
        nat = ",".join(self.nationalities) or "all"
        return f"randomuser:seed={self.seed}:nat={nat}:page={page}:size={size}"

    def batches(self, records: int, batch_size: int) -> Iterator[RawBatch]:
        size = min(batch_size, MAX_RESULTS_PER_REQUEST)
        for page, count in plan_pages(records, size):
            # every page is requested with the same page size so page p means the same users
            body = self.client.fetch_page(
                results=size, page=page, seed=self.seed, nationalities=self.nationalities
            )
            documents = [doc for doc in body["results"] if isinstance(doc, dict)][:count]
            yield RawBatch(batch_id=self.batch_id(page, size), source=SOURCE_NAME, documents=documents)
