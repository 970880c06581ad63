"""Time zones by name, and instants shown in them: what validation, explanations and pages share.

A module of its own so that validation (which refuses a time in words) and explain (which
describes an email's state) both use it without importing each other.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

__all__ = ["local", "moment", "zone"]


def zone(name: object) -> zoneinfo.ZoneInfo | None:
    """Return the IANA time zone called ``name``, or None if it is not one this machine knows.

    ``zoneinfo`` reads the name as a path in the zone database, so a name that is not a zone
    fails in more ways than ``ZoneInfoNotFoundError``: a directory of it (``Europe``) raises
    ``IsADirectoryError``, a data file that is no zone (``zone.tab``) or a path ``ValueError``.
    Every one of them means "no such zone", for a request and for a value already stored.
    """
    if not isinstance(name, str) or not name or not name.isprintable() or name.startswith("/") or ".." in name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local(at: dt.datetime, tz: str) -> dt.datetime:
    """Return the instant ``at`` in the zone it was chosen in, or in UTC if that cannot be.

    Whatever a row holds must still be shown: a zone that is no longer (or never was) one,
    or a time whose local form would fall outside the years 1 to 9999 (the last hours of
    9999 east of Greenwich), is shown in UTC rather than failing the page or the list.
    """
    found = zone(tz)
    if found is not None:
        try:
            return at.astimezone(found)
        except OverflowError:
            pass
    return at.astimezone(dt.UTC)


def moment(at: dt.datetime, tz: str) -> str:
    """Write an instant as a person reads it, in the zone they chose: ``Mon 1 Dec 2026 09:00 CET``."""
    local_at = local(at, tz)
    return f"{local_at:%a} {local_at.day} {local_at:%b %Y %H:%M:%S} {local_at.tzname()}"
