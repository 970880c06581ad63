"""The dev mailbox at work: search qualifiers, the views of a message, the HTML check, the
link check against a local HTTP server, multi-select delete, and pruning by the real sink."""

from __future__ import annotations

import base64
import email.message
import http.server
import re
import smtplib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tasks.core import db
from tests.support import procs
from tests.support.smtp_sink import free_port
from tests.support.web import csrf_token, make_app
from webapp import ext

Conn = Any
_ID = re.compile(r'data-devmail-id="(\d+)"')


@pytest.fixture
def ops_app(web_env: dict[str, str]) -> Iterator[Flask]:
    """The app with an operator, and only 127.0.0.1 open to the link check."""
    app = make_app(web_env | {"OPERATOR_EMAILS": "ops@example.com", "DEVMAIL_LINK_CHECK_HOSTS": "127.0.0.1"})
    yield app
    app.extensions[ext.KEY].close()


@pytest.fixture
def ops(ops_app: Flask, sign_in: Callable[..., Any]) -> FlaskClient:
    client = ops_app.test_client()
    sign_in(client, "ops@example.com")
    return client


def store(conn: Conn, message: email.message.EmailMessage, mail_from: str = "noreply@localhost") -> int:
    """Keep ``message`` as the sink would; return its mailbox id."""
    row = db.one(
        conn,
        "insert_devmail",
        mail_from=mail_from,
        rcpt_tos=[str(a) for a in message.get_all("To", [])],
        message_id=message["Message-ID"],
        subject=str(message["Subject"]),
        raw=message.as_bytes(),
    )
    assert row is not None
    return int(row["id"])


def mail(
    sender: str, to: str, subject: str, text: str | None = "Hello.", html: str | None = None, **headers: str
) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message


def shown(client: FlaskClient, query: str) -> list[int]:
    response = client.get("/devmail/", query_string={"q": query})
    assert response.status_code == 200, response.get_data(as_text=True)
    return [int(i) for i in _ID.findall(response.get_data(as_text=True))]


def test_search_by_sender_recipient_subject_attachment_free_text_and_negation(ops: FlaskClient, conn: Conn) -> None:
    invoice = mail("Alice <alice@example.com>", "bob@example.com", "Invoice March")
    invoice.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="invoice.pdf")
    a = store(conn, invoice)
    b = store(conn, mail("carol@example.com", "dave@example.com", "Hello", text="The invoice is late."))
    c = store(conn, mail("alice@example.com", "dave@example.com", "Weekly report"))

    assert shown(ops, "") == [c, b, a]
    assert shown(ops, "from:alice") == [c, a]
    assert shown(ops, "from:Alice to:dave subject:REPORT") == [c]
    assert shown(ops, "has:attachment") == [a]
    assert shown(ops, "!has:attachment from:alice") == [c]
    assert shown(ops, 'subject:"invoice march"') == [a]
    assert shown(ops, "invoice") == [b, a]  # the subject of one, the text of the other
    assert shown(ops, "-invoice") == [c]
    assert shown(ops, "to:nobody") == []


def test_a_search_reaches_past_the_newest_page_and_a_list_stops_at_a_hundred(ops: FlaskClient, conn: Conn) -> None:
    needle = store(conn, mail("a@example.com", "b@example.com", "Needle"))
    for n in range(230):  # more than a page of the search's reading, all newer than the needle
        store(conn, mail("a@example.com", "b@example.com", f"Filler {n}"))

    assert shown(ops, "subject:needle") == [needle]
    assert len(shown(ops, "")) == len(shown(ops, "subject:filler")) == 100


def test_a_query_that_cannot_be_read_says_what_is_wrong(ops: FlaskClient, conn: Conn) -> None:
    store(conn, mail("a@example.com", "b@example.com", "Kept"))
    cases = {
        "bogus:x": "unknown qualifier bogus:",
        'subject:"open': "never closed",
        "from:": "from: needs a value",
        "has:pdf": "has: takes attachment",
    }

    for query, says in cases.items():
        response = ops.get("/devmail/", query_string={"q": query})
        page = response.get_data(as_text=True)
        assert response.status_code == 400, query
        assert 'data-error-for="q"' in page and says in page.replace("&#34;", '"'), (query, page)
        assert "Kept" not in page, query


def test_html_text_source_and_headers_views_and_the_sandboxed_html(ops: FlaskClient, conn: Conn) -> None:
    html = '<p>Hi <b>there</b> <img alt="logo" src="https://images.example/logo.png"></p>'
    message = mail("a@example.com", "b@example.com", "Views", text="Plain hello.", html=html, X_Mailer="crafted 1.0")
    message.add_attachment(b"a,b\n", maintype="text", subtype="csv", filename="data.csv")
    mid = store(conn, message)

    default = ops.get(f"/devmail/{mid}").get_data(as_text=True)
    text = ops.get(f"/devmail/{mid}?view=text").get_data(as_text=True)
    source = ops.get(f"/devmail/{mid}?view=source").get_data(as_text=True)
    headers = ops.get(f"/devmail/{mid}?view=headers").get_data(as_text=True)
    body = ops.get(f"/devmail/{mid}/html")
    remote = ops.get(f"/devmail/{mid}/html?remote=1")
    raw = ops.get(f"/devmail/{mid}/raw")

    assert f'sandbox="" referrerpolicy="no-referrer" src="/devmail/{mid}/html"' in default
    assert "srcdoc" not in default and "data.csv" in default and "text/csv" in default
    assert '<pre class="text-body">Plain hello.' in text
    assert "X-Mailer: crafted 1.0" in source and "Content-Disposition: attachment" in source
    assert '<th scope="row">X-Mailer</th><td>crafted 1.0</td>' in headers
    assert body.get_data(as_text=True).strip() == html
    policy = body.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;") and "default-src 'none'" in policy and "img-src data:;" in policy
    assert "http" not in policy and "script-src" not in policy
    assert "img-src data: http: https:" in remote.headers["Content-Security-Policy"]
    assert remote.headers["Content-Security-Policy"].startswith("sandbox;")
    assert raw.data == message.as_bytes() and "attachment" in raw.headers["Content-Disposition"]
    attached = ops.get(f"/devmail/{mid}/attachments/0")
    assert attached.data == b"a,b\n" and attached.headers["Content-Disposition"] == 'attachment; filename="data.csv"'
    assert attached.headers["Content-Type"] == "application/octet-stream"
    assert attached.headers["Content-Security-Policy"].startswith("sandbox;")
    assert f'href="/devmail/{mid}/attachments/0" download>data.csv</a>' in default
    assert ops.get(f"/devmail/{mid}/attachments/1").status_code == 404
    assert ops.get("/devmail/999999").status_code == 404
    text_only = store(conn, mail("a@example.com", "b@example.com", "Text only"))
    assert ops.get(f"/devmail/{text_only}/html").status_code == 404


def test_inline_images_show_in_the_html_view_without_loading_anything_remote(ops: FlaskClient, conn: Conn) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    message = mail("a@example.com", "b@example.com", "Logo", html='<img alt="Logo" src="cid:logo@test">')
    html_part = message.get_body(("html",))
    assert html_part is not None
    html_part.add_related(png, "image", "png", cid="<logo@test>")
    mid = store(conn, message)

    body = ops.get(f"/devmail/{mid}/html").get_data(as_text=True)

    assert body.strip() == f'<img alt="Logo" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


BAD_HTML = """<html><head><style>.box { display: flex; }</style>
<link rel="stylesheet" href="https://cdn.example/x.css"></head>
<body><div style="display:grid">grid</div><div style="position: absolute; top: 0">abs</div>
<td style="background-image: url(https://img.example/bg.png)">bg</td>
<svg width="10" height="10"></svg><img src="https://img.example/chart.svg" alt="chart">
<img src="https://img.example/photo.png"><script>alert(1)</script><form action="https://x.example/"></form>
<!-- {padding} --></body></html>"""


def rules(page: str) -> list[str]:
    return re.findall(r'data-rule="([a-z-]+)"', page)


def test_the_html_check_names_each_problem_and_the_clients_it_affects(ops: FlaskClient, conn: Conn) -> None:
    big = BAD_HTML.replace("{padding}", "x" * 110_000)
    bad = store(conn, mail("a@example.com", "b@example.com", "Bad", text=None, html=big))
    clean_html = '<table role="presentation"><tr><td style="padding:8px">Hi <img src="cid:l" alt="L"></td></tr></table>'
    clean = store(conn, mail("a@example.com", "b@example.com", "Clean", text="Hi", html=clean_html))

    page = ops.get(f"/devmail/{bad}?view=check").get_data(as_text=True)
    clean_page = ops.get(f"/devmail/{clean}?view=check").get_data(as_text=True)

    assert rules(page) == [
        "style-in-head",
        "external-stylesheet",
        "flexbox",
        "grid",
        "position",
        "background-image",
        "svg",
        "script",
        "form",
        "img-missing-alt",
        "no-text-part",
        "gmail-clipping",
    ]
    assert "Outlook for Windows" in page and "Gmail (clips it" in page
    assert re.search(r'data-rule="svg"><strong>SVG image</strong> <span class="count">2</span>', page)
    assert rules(clean_page) == [] and "No common email-client problem found." in clean_page


class _Site(http.server.BaseHTTPRequestHandler):
    """A local site whose pages answer as a link check may meet them; it notes every request."""

    seen: list[tuple[str, str]] = []

    def _answer(self, with_body: bool) -> None:
        _Site.seen.append((self.command, self.path))
        if self.path == "/head-refused" and self.command == "HEAD":
            self.send_response(405)
        elif self.path in ("/ok", "/head-refused"):
            self.send_response(200)
        elif self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/final")
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802  (the standard library's name)
        self._answer(False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


def test_links_are_listed_then_checked_only_when_asked_and_only_on_allowed_hosts(
    ops: FlaskClient, conn: Conn, site: str
) -> None:
    port = site.split(":")[1]
    html = (
        f'<a href="http://{site}/ok">ok</a> <a href="http://{site}/gone">gone</a>'
        f' <a href="http://{site}/head-refused">get</a> <a href="http://{site}/moved">moved</a>'
        f' <a href="http://localhost:{port}/ok">not allowed</a> <img alt="" src="https://images.example/x.png">'
    )
    mid = store(conn, mail("a@example.com", "b@example.com", "Links", text=f"See http://{site}/ok.", html=html))
    _Site.seen.clear()

    listed = ops.get(f"/devmail/{mid}?view=links").get_data(as_text=True)
    assert _Site.seen == []  # listing requests nothing
    response = ops.post(f"/devmail/{mid}/links", data={"csrf_token": csrf_token(ops)})
    checked = response.get_data(as_text=True)

    assert listed.count('<td class="url">') == 6 and "not checked yet" in listed
    assert response.status_code == 200
    assert sorted(_Site.seen) == [
        ("GET", "/head-refused"),
        ("HEAD", "/gone"),
        ("HEAD", "/head-refused"),
        ("HEAD", "/moved"),
        ("HEAD", "/ok"),
    ]  # once each, the redirect not followed, localhost and the remote image never asked
    statuses = re.findall(r'<tr data-link-status="(\d*)"><td class="url">([^<]+)</td>', checked)
    assert statuses == [
        ("200", f"http://{site}/ok"),
        ("404", f"http://{site}/gone"),
        ("200", f"http://{site}/head-refused"),
        ("301", f"http://{site}/moved"),
        ("", f"http://localhost:{port}/ok"),
        ("", "https://images.example/x.png"),
    ]
    assert "redirects to /final" in checked and "host not in DEVMAIL_LINK_CHECK_HOSTS" in checked


def test_the_selected_messages_are_deleted_and_nothing_else(ops: FlaskClient, conn: Conn) -> None:
    a, b, c = (store(conn, mail("a@example.com", "b@example.com", f"Mail {n}")) for n in range(3))
    token = csrf_token(ops, "/devmail/")

    refused = [
        ops.post("/devmail/delete", data={"csrf_token": token}),
        ops.post("/devmail/delete", data={"csrf_token": token, "ids": [str(a), "x"]}),
    ]
    response = ops.post("/devmail/delete", data={"csrf_token": token, "ids": [str(a), str(c)], "q": "from:a"})

    assert [r.status_code for r in refused] == [422, 422]
    assert all("ids" in r.get_data(as_text=True) or "select" in r.get_data(as_text=True) for r in refused)
    assert response.status_code == 302 and response.headers["Location"] == "/devmail/?q=from:a"
    assert [r["id"] for r in conn.execute("SELECT id FROM devmail_messages ORDER BY id")] == [b]
    assert "Deleted 2 message(s)." in ops.get("/devmail/").get_data(as_text=True)


def test_the_sink_keeps_only_the_last_devmail_keep(env: dict[str, str], conn: Conn, tmp_path: Any) -> None:
    port = free_port()
    log = tmp_path / "devmail.log"
    sink_env = env | {"DEVMAIL_ADDR": f"127.0.0.1:{port}", "DEVMAIL_KEEP": "3"}
    sink = procs.Process([sys.executable, "-m", "tasks", "devmail"], sink_env, log)
    try:
        procs.wait_until(lambda: "dev mailbox listening" in log.read_text(), timeout=20, what="the dev mailbox")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            for n in range(5):
                smtp.send_message(mail("a@example.com", "b@example.com", f"Number {n}"))
    finally:
        sink.stop()

    kept = [r["subject"] for r in conn.execute("SELECT subject FROM devmail_messages ORDER BY id")]
    assert kept == ["Number 2", "Number 3", "Number 4"]
