"""API keys, and each key's share of an ingress replica: documents at once and pages a minute.

Keys come from ``auth.api_keys`` (best from the environment, ``SERVE_APP_AUTH__API_KEYS=k1,k2``, which
a Kubernetes secret fills): they are compared in constant time and never logged; logs and limits name
a caller by a fingerprint of its key (``key-1a2b3c4d``). Without keys every caller is ``anonymous``
and only the replica-wide limits apply. The limits are per ingress replica: with N replicas a key
gets up to N times them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from .config import AuthArgs
from .errors import RateLimited, Unauthorized

# Probes answer without a key (kubelet and load balancers send none), and so does the landing page.
OPEN_ROUTES = frozenset({"/", "/health", "/ready", "/livez"})
ANONYMOUS = "anonymous"
PROBE = "probe"  # a caller of an open route without a right key: told no more than a probe needs
ASK = "send the API key as 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'"


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def exposure_warning(host: str | None, args: AuthArgs) -> str | None:
    """What to log when the proxy listens beyond this machine and no key is asked for."""
    if args.api_keys or host is None or host in LOOPBACK:
        return None
    return (
        f"the HTTP proxy listens on {host} and no API keys are set: anyone who reaches this port can "
        "use the service; set SERVE_APP_AUTH__API_KEYS=key1,key2 (16+ characters each)"
    )


def fingerprint(key: str) -> str:
    """What logs and limits call a key by: stable, and useless for guessing it."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def _presented(headers: Mapping[str, str]) -> list[str]:
    """Every key the request carries: a Bearer token, an X-Api-Key, or both. ``Authorization:
    token KEY`` is a Bearer token too: it is what clients of Baidu AI Studio's hosted PaddleOCR-VL
    (``/layout-parsing``) send, and they should need only a new address and key."""
    keys = []
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        keys.append(token.strip())
    if headers.get("x-api-key"):
        keys.append(headers["x-api-key"])
    return keys


class Gate:
    def __init__(self, args: AuthArgs, clock: Callable[[], float] = time.monotonic) -> None:
        keys = [k.get_secret_value() for k in args.api_keys]
        self._keys = [(k.encode(), fingerprint(k)) for k in keys]
        self._max_documents = args.max_documents_per_key
        self._per_minute = args.pages_per_minute_per_key
        self._clock = clock
        self._running: dict[str, int] = defaultdict(int)
        self._pages: dict[str, tuple[float, float]] = {}  # caller -> (pages owed, when)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def caller(self, headers: Mapping[str, str]) -> str:
        """The caller's key fingerprint; ``Unauthorized`` without a key or with a wrong one."""
        if not self._keys:
            return ANONYMOUS
        given = _presented(headers)
        if not given:
            raise Unauthorized(f"this service needs an API key: {ASK}")
        names = {self._name(key) for key in given}  # a request with two keys is held to both
        if None in names or len(names) > 1:
            raise Unauthorized("the API key was not accepted")
        return names.pop()  # type: ignore[return-value]

    def visitor(self, headers: Mapping[str, str]) -> str:
        """On an open route: ``PROBE`` for a request without a key, else the caller (a wrong key is
        a 401 here too: it is a mistake to say, not a probe to answer)."""
        if self._keys and not _presented(headers):
            return PROBE
        return self.caller(headers)

    def _name(self, given: str) -> str | None:
        found = None
        for key, name in self._keys:  # every key compared: the time taken tells nothing
            if hmac.compare_digest(key, given.encode()):
                found = name
        return found

    @contextmanager
    def document(self, caller: str) -> Iterator[None]:
        """One document of ``caller`` being read: ``RateLimited`` at once when it is at its
        documents at once or owes a minute's pages, before its body is read."""
        if caller != ANONYMOUS and self._max_documents and self._running[caller] >= self._max_documents:
            raise RateLimited(
                f"{caller} has {self._running[caller]} documents being read, its limit on this replica",
                retry_after_s=2.0,
            )
        self._check_pages(caller)
        self._running[caller] += 1
        try:
            yield
        finally:
            self._running[caller] -= 1
            if not self._running[caller]:
                del self._running[caller]

    def take(self, caller: str, pages: int) -> None:
        """``pages`` about to be read (or queued) for ``caller``, charged before any model works on
        them and not given back if the reading fails; ``RateLimited`` when it owes a minute's
        pages already (another document of its own may have been charged since it was admitted).
        A leaky bucket that empties at the per-minute rate: a document is taken while a minute's
        pages hold room for one more, so one large document may go over once and the next waits
        until it is paid back."""
        self._check_pages(caller)
        if caller != ANONYMOUS and self._per_minute is not None:
            self._pages[caller] = (self._owed(caller) + pages, self._clock())

    def _check_pages(self, caller: str) -> None:
        if caller != ANONYMOUS and (wait := self._wait_s(caller)) > 0:
            raise RateLimited(f"{caller} has used its pages for this minute", retry_after_s=wait)

    def _owed(self, caller: str) -> float:
        owed, at = self._pages.get(caller, (0.0, self._clock()))
        assert self._per_minute is not None
        return max(0.0, owed - (self._clock() - at) * self._per_minute / 60)

    def _wait_s(self, caller: str) -> float:
        if self._per_minute is None:
            return 0.0
        over = self._owed(caller) + 1 - self._per_minute  # room for one more page, or how long until
        return 0.0 if over <= 0 else max(1.0, math.ceil(over * 60 / self._per_minute))
