"""The Docker deployment, checked without Docker: every command, health check and
variable in docker-compose.yml must be real in this project."""

from __future__ import annotations

import pathlib
import re
import runpy
import shlex
import urllib.parse
from typing import Any

import pytest
import yaml

from tasks import cli
from tasks.core import config
from webapp import create_app

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
#: Services built from this project (the others are PostgreSQL's and Redis's images).
OURS = sorted(name for name, service in SERVICES.items() if "build" in service)


def settings_read() -> set[str]:
    """Every environment variable the project reads: the settings of tasks/core/config.py (gunicorn's too)."""
    return set(config.SETTINGS)


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def seconds(text: str) -> float:
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", text))


def test_the_stack_has_every_service_the_design_names() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "web", "worker", "monitor", "devmail"}
    assert OURS == ["devmail", "migrate", "monitor", "web", "worker"]


def test_postgres_16_and_redis_7_keep_their_data_redis_with_aof_on() -> None:
    postgres, redis = SERVICES["postgres"], SERVICES["redis"]

    assert postgres["image"].startswith("postgres:16")
    assert redis["image"].startswith("redis:7")
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "redisdata:/data" in redis["volumes"]
    assert {"pgdata", "redisdata"} <= set(COMPOSE["volumes"])
    assert command(redis)[command(redis).index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize("name", OURS)
def test_every_command_exists_in_the_project(name: str) -> None:
    argv = command(SERVICES[name])
    subcommands = cli.build_parser()._subparsers._group_actions[0].choices

    if argv[:3] == ["python", "-m", "tasks"]:
        assert argv[3] in subcommands
        assert cli.build_parser().parse_args(argv[3:]).func.__name__ == f"cmd_{argv[3].replace('-', '_')}"
    else:
        assert argv[0] == "gunicorn"
        config_file = argv[argv.index("-c") + 1]
        module, factory = argv[-1].split(":")
        assert (ROOT / config_file).is_file()
        assert (module, factory) == ("webapp", "create_app()")


def test_migrate_runs_once_and_the_others_wait_for_it() -> None:
    migrate = SERVICES["migrate"]

    assert command(migrate)[-1] == "migrate" and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "monitor", "devmail"):
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_the_web_health_check_asks_a_real_endpoint_on_the_bound_port() -> None:
    web = SERVICES["web"]
    probe = " ".join(web["healthcheck"]["test"])
    url = urllib.parse.urlsplit(re.search(r"https?://[^'\"\s]+", probe)[0])
    routes = {rule.rule for rule in create_app({"ENV": {"APP_ENV": "test"}}).url_map.iter_rules()}

    assert url.path in routes and url.path in ("/readyz", "/healthz")
    assert str(url.port) == web["environment"]["WEB_BIND"].rsplit(":", 1)[1]
    assert f"{url.port}:{url.port}" in web["ports"]


def test_two_workers_stop_gracefully_before_docker_kills_them() -> None:
    worker = SERVICES["worker"]

    assert worker["deploy"]["replicas"] == 2
    assert seconds(worker["stop_grace_period"]) > float(worker["environment"]["WORKER_SHUTDOWN_TIMEOUT"])


def test_the_mail_catcher_is_a_development_profile() -> None:
    devmail = SERVICES["devmail"]

    assert devmail["profiles"] == ["dev"] and command(devmail)[-1] == "devmail"
    assert devmail["environment"]["DEVMAIL_ADDR"].endswith(":2525")
    assert SERVICES["worker"]["environment"]["DEVMAIL_ADDR"] == "devmail:2525"


@pytest.mark.parametrize("name", OURS)
def test_every_variable_a_service_sets_is_one_the_config_reads(name: str) -> None:
    assert set(SERVICES[name]["environment"]) <= settings_read()


def test_secrets_come_from_env_whose_example_documents_each_one() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }

    assert interpolated == example
    assert {"POSTGRES_PASSWORD", "SECRET_KEY"} <= interpolated
    assert re.search(r"\$\{SECRET_KEY:\?", text)  # compose refuses to start without it
    assert {".env", "/.env"} & set((ROOT / ".gitignore").read_text().split())


def test_every_setting_has_a_row_in_the_configuration_reference() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()

    assert {name for name in settings_read() if f"| `{name}` |" not in reference} == set()


def test_gunicorn_reads_its_settings_through_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """WEB_BIND, WEB_WORKERS and WEB_THREADS are checked like every setting; a bad one stops gunicorn (exit 2)."""
    monkeypatch.setenv("WEB_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("WEB_WORKERS", "3")
    monkeypatch.delenv("WEB_THREADS", raising=False)

    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))

    assert (conf["bind"], conf["workers"], conf["threads"]) == ("0.0.0.0:9000", 3, 16)
    monkeypatch.setenv("WEB_WORKERS", "none")
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert stopped.value.code == 2


def test_the_monitor_runs_and_alerts_to_the_slack_webhook_of_env() -> None:
    monitor = SERVICES["monitor"]

    assert command(monitor)[-1] == "monitor"
    assert monitor["environment"]["SLACK_WEBHOOK_URL"] == "${SLACK_WEBHOOK_URL:-}"
    assert float(monitor["environment"]["MONITOR_INTERVAL"]) > 0
    assert "replicas" not in monitor.get("deploy", {})  # one is active anyway; a second only stands by
