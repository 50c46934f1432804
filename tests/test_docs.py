"""The documentation site's sources: the generated configuration page and the nav of mkdocs.yml."""

from __future__ import annotations

from pathlib import Path

import yaml
from borg_game.config_reference import configuration_reference, settings_models

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION_PAGE = REPO_ROOT / "docs" / "configuration.md"


def test_configuration_page_is_the_generated_reference() -> None:
    assert CONFIGURATION_PAGE.read_text(encoding="utf-8") == configuration_reference(), (
        "regenerate it: python -m borg_game.config_reference docs/configuration.md (or make docs)"
    )


def test_configuration_page_lists_every_key_of_both_settings_models() -> None:
    models = settings_models()
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    missing = [
        f"CONFIG_{name}"
        for name in [*models.game.model_fields, *models.monitor.model_fields]
        if f"`CONFIG_{name}`" not in page
    ]
    assert not missing, f"keys missing from docs/configuration.md: {missing}"


def test_every_page_in_docs_is_in_the_site_navigation() -> None:
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = {page for entry in config["nav"] for page in entry.values()}
    on_disk = {path.name for path in (REPO_ROOT / "docs").glob("*.md")}
    assert on_disk == in_nav, f"in docs/ only: {on_disk - in_nav}; in the nav only: {in_nav - on_disk}"
