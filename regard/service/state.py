"""What the routes share: the service's configuration, its state (store, keys, rate limiter, pixel
budget, readiness), and the constants of its two dialects. Imported by the routers and by app.py,
which assembles them; it imports neither."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from regard import config
from regard.config import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_REGION,
    DEFAULT_REQUEST_TIMEOUT,
    SERVICE_MAX_PIXELS,
)
from regard.errors import RegardError
from regard.service.auth import Caller
from regard.service.keys import KeyRing
from regard.service.ratelimit import RateLimiter

REKOGNITION_PATH = "/"
AWS_JSON = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class ServiceConfig:
    """What `regard serve` was asked for: built once from the settings and the command's options,
    and handed to each worker process as it starts (regard/service/server.py)."""

    store_url: str | None = None  # None: $REGARD_STORE or the user's default SQLite file
    region: str = DEFAULT_REGION  # the region SigV4 requests must be signed for
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES  # Rekognition's limit for Image.Bytes
    max_pixels: int = SERVICE_MAX_PIXELS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds before a request is answered 503
    master_key_file: Path | None = None  # None: $REGARD_MASTER_KEY_FILE or the default (keys.py)
    reports_dir: Path | None = None  # `regard audit` reports the console lists (--reports, $REGARD_REPORTS_DIR)
    console_dir: Path | None = None  # the console's working folder, shared by the workers ($REGARD_CONSOLE_DIR)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        """Two images in base64 (CompareFaces) plus room for the JSON around them."""
        return 2 * (4 * ((self.max_image_bytes + 2) // 3)) + 64 * 1024

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """The service's part of `regard.config.Settings`, which `regard serve`'s options override.
        The master key file is resolved here, in the parent, for the settings' store (the CLI lays
        --store over the settings): the workers get a path, not a rule to apply again."""
        settings = config.current()
        return cls(
            store_url=settings.store_url,
            region=settings.region,
            max_image_bytes=settings.max_image_bytes,
            max_pixels=settings.max_pixels,
            request_timeout=settings.request_timeout,
            master_key_file=settings.master_key_for(settings.store_url).path,
            reports_dir=settings.reports_dir,
            console_dir=settings.console_dir,
        )


PIXEL_BUDGET_IMAGES = 2
"""The photos being worked on at once in one service process hold at most this many times the pixel
limit (their declared sizes, read from the headers before decoding); requests beyond it wait."""


class ServiceBusy(RegardError):
    """The process's pixel budget stayed full for longer than a request may wait."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PixelBudget:
    """A weighted semaphore over the pixels of the photos being worked on, so that memory stays
    bounded however many large photos arrive at once (each holds its declared size until its
    request ends)."""

    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = max(1, capacity)
        self.wait_seconds = wait_seconds
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        held = self.acquire(pixels)
        try:
            yield
        finally:
            self.release(held)

    def acquire(self, pixels: int) -> int:
        """Wait for room for `pixels` (at most `wait_seconds`, then ServiceBusy); what to release."""
        pixels = min(max(0, pixels), self.capacity)
        deadline = time.monotonic() + self.wait_seconds
        with self._cond:
            while self.used + pixels > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceBusy(
                        f"the server is working on as many large photos as it holds ({self.capacity:,} pixels); retry shortly"
                    )
                self._cond.wait(timeout=left)
            self.used += pixels
        return pixels

    def release(self, pixels: int) -> None:
        with self._cond:
            self.used -= pixels
            self._cond.notify_all()


def declared_pixels(photos: list[bytes]) -> int:
    """The pixels the photos declare in their headers (0 for what is not an image: decoding it
    later says what is wrong)."""
    from regard.image import image_size

    total = 0
    for data in photos:
        try:
            width, height = image_size(data, max_pixels=1 << 62)
        except Exception:  # noqa: BLE001, S112 - an unreadable photo holds nothing; load_image refuses it properly
            continue
        total += width * height
    return total


class ServiceState:
    """What the routes share: the store, the key ring, the rate limiter, and readiness."""

    def __init__(self, config: ServiceConfig) -> None:
        from regard.store import open_store

        self.config = config
        self.store = open_store(config.store_url, create=config.store_url is None)  # a named store must exist
        self.keys = KeyRing(self.store, config.master_key_file)
        self.limiter = RateLimiter()
        self.pixels = PixelBudget(PIXEL_BUDGET_IMAGES * config.max_pixels, wait_seconds=min(30.0, config.request_timeout / 2))
        self.ready = threading.Event()

    def warm_up(self) -> None:
        """Load and verify the models so the first request does not pay for it."""
        from regard import models
        from regard.service import metrics

        started = time.perf_counter()
        models.get_detector()
        models.get_embedder()
        metrics.models_loaded(time.perf_counter() - started)
        self.ready.set()

    def admit(self, caller: Caller) -> None:
        """The per-key rate limit; raises Throttled."""
        wait = self.limiter.check(caller.key.key_id, caller.key.rate_per_minute)
        if wait is not None:
            raise Throttled(wait)


class Throttled(RegardError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded for this key: retry in {retry_after:.1f} s")
        self.retry_after = retry_after


def state_of(request: Request) -> ServiceState:
    return request.app.state.regard  # type: ignore[no-any-return]
