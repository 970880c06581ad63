"""The dev mailbox's checks of a message: its HTML against what email clients drop, and its links.

The HTML check is a small rule set in the spirit of caniemail.com: each finding names
the clients it affects. Links are listed from the HTML (``html.parser``) and the text
part; a link is requested only when the user asks, only to a host ``DEVMAIL_LINK_CHECK_HOSTS``
allows, with one HEAD (GET if HEAD is refused) and no redirect followed.
"""

from __future__ import annotations

import dataclasses
import html.parser
import re
import urllib.parse

import httpx

#: Gmail clips a message whose HTML is bigger than this ("[Message clipped]").
GMAIL_CLIP_BYTES = 102 * 1024
#: At most this many links are requested per check.
MAX_CHECKED = 50
LINK_TIMEOUT = 5.0

_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)
_FLEX = re.compile(r"display\s*:\s*(?:inline-)?flex", re.IGNORECASE)
_GRID = re.compile(r"display\s*:\s*(?:inline-)?grid", re.IGNORECASE)
_POSITION = re.compile(r"position\s*:\s*(?:absolute|fixed|relative|sticky)", re.IGNORECASE)
_BACKGROUND_IMAGE = re.compile(r"background(?:-image)?\s*:[^;}]*url\(", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One common problem: what it is, which clients it affects, what to do."""

    id: str
    title: str
    clients: str
    advice: str


RULES = {
    rule.id: rule
    for rule in (
        Rule(
            "style-in-head",
            "<style> element",
            "Gmail apps with non-Google accounts, Outlook.com's older renderer, and any message Gmail clips",
            "Inline the styles the layout depends on (style attributes); keep <style> for enhancements.",
        ),
        Rule(
            "external-stylesheet",
            '<link rel="stylesheet">',
            "Gmail, Outlook (Windows, web), Yahoo Mail, Apple Mail when remote content is blocked",
            "Put the CSS in the message itself.",
        ),
        Rule(
            "flexbox",
            "display: flex",
            "Outlook for Windows (Word rendering engine), Gmail apps with non-Google accounts, Yahoo Mail",
            "Lay out with tables.",
        ),
        Rule(
            "grid",
            "display: grid",
            "Gmail, Outlook (Windows, web, mobile), Yahoo Mail",
            "Lay out with tables.",
        ),
        Rule(
            "position",
            "position (absolute, fixed, relative, sticky)",
            "Gmail (removes it), Outlook for Windows, Yahoo Mail",
            "Lay out with tables and padding.",
        ),
        Rule(
            "background-image",
            "CSS background image",
            "Outlook for Windows (needs VML), Gmail apps with non-Google accounts",
            "Give a background colour as a fallback; do not put text only readable over the image.",
        ),
        Rule(
            "svg",
            "SVG image",
            "Gmail, Outlook (Windows, web), Yahoo Mail",
            "Use PNG or JPEG images.",
        ),
        Rule(
            "script",
            "<script>",
            "Every email client (scripts are removed)",
            "Remove scripts; link to a web page for anything interactive.",
        ),
        Rule(
            "form",
            "<form>",
            "Gmail, Outlook (Windows), many webmails (disabled or removed)",
            "Link to a web page holding the form.",
        ),
        Rule(
            "img-missing-alt",
            "Image without alt text",
            "Every client that blocks images by default (Outlook, Gmail with images off) and screen readers",
            'Give every image an alt attribute (alt="" for a decorative one).',
        ),
        Rule(
            "no-text-part",
            "No plain-text part",
            "Text-only clients, screen readers, and spam filters that score HTML-only mail",
            "Send multipart/alternative with a text/plain part.",
        ),
        Rule(
            "gmail-clipping",
            "HTML over 102 KB",
            "Gmail (clips it behind \u201c[Message clipped] View entire message\u201d)",
            "Trim the markup: inline styles repeated on every cell add up.",
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """A rule the message breaks, how often, and an example."""

    rule: Rule
    count: int
    example: str


@dataclasses.dataclass(frozen=True)
class Link:
    """A link in the message: where it appears and, once checked, what the host answered."""

    url: str
    where: str
    checkable: bool
    status: int | None = None
    result: str = ""


class _Scanner(html.parser.HTMLParser):
    """Collect tags, styles and links from a message's HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hits: dict[str, list[str]] = {}
        self.links: list[tuple[str, str]] = []
        self._in_style = False

    def hit(self, rule: str, example: str) -> None:
        self.hits.setdefault(rule, []).append(example[:120])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        markup = self.get_starttag_text() or f"<{tag}>"
        if tag == "style":
            self._in_style = True
            self.hit("style-in-head", markup)
        elif tag == "link" and "stylesheet" in attributes.get("rel", "").lower():
            self.hit("external-stylesheet", markup)
        elif tag == "script":
            self.hit("script", markup)
        elif tag == "form":
            self.hit("form", markup)
        elif tag == "svg":
            self.hit("svg", markup)
        elif tag == "img":
            if "alt" not in attributes:
                self.hit("img-missing-alt", markup)
            if urllib.parse.urlsplit(attributes.get("src", "")).path.lower().endswith(".svg"):
                self.hit("svg", markup)
        if attributes.get("background"):
            self.hit("background-image", markup)
        self._css(attributes.get("style", ""), markup)
        for name in ("href", "src"):
            value = attributes.get(name, "").strip()
            if value and urllib.parse.urlsplit(value).scheme.lower() in ("http", "https"):
                self.links.append((value, f"<{tag} {name}>"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "style":
            self._in_style = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data, None)

    def _css(self, css: str, example: str | None) -> None:
        for rule, pattern in (
            ("flexbox", _FLEX),
            ("grid", _GRID),
            ("position", _POSITION),
            ("background-image", _BACKGROUND_IMAGE),
        ):
            for found in pattern.finditer(css):
                self.hit(rule, example or found.group(0))


def check_html(html_body: str | None, *, has_text_part: bool) -> list[Finding]:
    """Return what email clients would do wrong with this HTML, in the order of ``RULES``."""
    if html_body is None:
        return []
    scanner = _Scanner()
    scanner.feed(html_body)
    scanner.close()
    hits = scanner.hits
    if not has_text_part:
        hits["no-text-part"] = ["text/html only"]
    size = len(html_body.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        hits["gmail-clipping"] = [f"{size / 1024:.0f} KB of HTML"]
    return [Finding(RULES[rule], len(hits[rule]), hits[rule][0]) for rule in RULES if rule in hits]


def links(html_body: str | None, text_body: str, hosts: tuple[str, ...]) -> list[Link]:
    """Every http(s) link of the message, once each, HTML first, then the text part's; ``checkable``
    if its host is one of ``hosts``."""
    found: list[tuple[str, str]] = []
    if html_body is not None:
        scanner = _Scanner()
        scanner.feed(html_body)
        scanner.close()
        found.extend(scanner.links)
    found.extend((m.group(0).rstrip(".,;:!?"), "text part") for m in _URL_IN_TEXT.finditer(text_body))
    seen: dict[str, Link] = {}
    for url, where in found:
        if url not in seen:
            seen[url] = Link(url=url, where=where, checkable=allowed(url, hosts))
    return list(seen.values())


def allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """Tell whether the operator lets the link check request ``url`` (its host is listed)."""
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and host.lower() in hosts


def check_links(found: list[Link], hosts: tuple[str, ...]) -> list[Link]:
    """Request each allowed link (HEAD, then GET if HEAD is refused); the others are listed as not checked."""
    checked: list[Link] = []
    budget = MAX_CHECKED
    with httpx.Client(timeout=LINK_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        for link in found:
            if not link.checkable or not allowed(link.url, hosts):
                checked.append(dataclasses.replace(link, result="not checked: host not in DEVMAIL_LINK_CHECK_HOSTS"))
                continue
            if budget == 0:
                checked.append(dataclasses.replace(link, result=f"not checked: over {MAX_CHECKED}"))
                continue
            budget -= 1
            checked.append(_request(client, link))
    return checked


def _request(client: httpx.Client, link: Link) -> Link:
    try:
        response = client.head(link.url)
        if response.status_code in (405, 501):
            response = client.get(link.url)
    except httpx.HTTPError as exc:
        return dataclasses.replace(link, result=f"error: {type(exc).__name__}")
    result = "ok" if response.status_code < 300 else response.reason_phrase
    if response.is_redirect:
        result = f"redirects to {response.headers.get('location', '?')}"
    return dataclasses.replace(link, status=response.status_code, result=result)
