"""The web app's process health endpoint."""

from __future__ import annotations

from webapp import create_app


def test_healthz_answers_while_the_process_is_up() -> None:
    client = create_app({"ENV": {"APP_ENV": "test"}, "TESTING": True}).test_client()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
