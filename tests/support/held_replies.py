"""Replies a stand-in holds back (a provider that took the request and has not answered yet),
shared by tests/support/ses_standin.py and sendgrid_standin.py."""

from __future__ import annotations

import threading


class HeldReplies:
    """``_hold`` keeps a reply back until ``release`` (or its own timeout); ``held`` counts them."""

    def __init__(self) -> None:
        self._release = threading.Event()
        #: Replies being held back now.
        self.held = 0
        self._lock = threading.Lock()
        self._none_held = threading.Condition(self._lock)

    def release(self, timeout: float = 5.0) -> None:
        """Let held replies (``stall_after_accept``) go, and return once they are answered."""
        self._release.set()
        with self._none_held:
            self._none_held.wait_for(lambda: self.held == 0, timeout=timeout)

    def _hold(self, seconds: float) -> None:
        """Hold a reply back (``held`` counts it until ``_answered``)."""
        with self._lock:
            self.held += 1
        self._release.wait(timeout=seconds)

    def _answered(self) -> None:
        """A held reply went out."""
        with self._none_held:
            self.held -= 1
            self._none_held.notify_all()
