"""The files generated from the settings' declarations are the committed ones."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from tasks.core import config

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "render", "command"),
    [
        ("docs/configuration.md", config.render_docs, config.DOCS_COMMAND),
        (".env.example", config.render_env_example, config.ENV_EXAMPLE_COMMAND),
    ],
)
def test_a_generated_file_is_up_to_date(path: str, render: Callable[[], str], command: str) -> None:
    committed = (ROOT / path).read_text(encoding="utf-8")

    assert committed == render(), f"{path} is out of date with tasks/core/config.py: run `make config-docs` ({command})"


def test_every_setting_is_documented_with_its_default() -> None:
    """One row per setting, in declaration order, showing the default as written in the environment."""
    rows = [line for line in config.render_docs().splitlines() if line.startswith("| `")]

    assert [row.split("`")[1] for row in rows] == list(config.SETTINGS)
    assert "| `WORKER_CONCURRENCY` | `5` |" in config.render_docs()
    assert "| `RATE_LIMITS` | *(empty)* |" in config.render_docs()


def test_every_default_is_what_load_returns_for_an_empty_environment() -> None:
    """A default is written once; loading it from the environment gives the same settings as not setting it."""
    written = {name: declared.default for name, declared in config.SETTINGS.items()}

    assert config.load(written) == config.load({}) == config.Settings()
