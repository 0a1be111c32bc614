"""The documentation site (mkdocs.yml, docs/): it builds with ``mkdocs build --strict``.

The build runs once, in the default environment (Python 3.11 + Django 5.2): the
pages and the docstrings it renders are the same in every environment, and a
build takes a few seconds that the Django matrix need not spend again. The rest
(every page in the navigation, nothing that downloads at build time) is read
from the files and runs everywhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

#: The environment that builds the site (see the module docstring).

#: Material's plugins that fetch from the internet when the site is built.
DOWNLOADING_PLUGINS = {"social", "privacy", "optimize", "material/social", "material/privacy"}


def _config() -> dict[str, Any]:
    """Return mkdocs.yml, read as plain YAML (it uses no custom tags)."""
    loaded = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _nav_files(nav: Any) -> Iterator[str]:
    """Yield every page path named in ``nav`` (nested sections included)."""
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_files(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_files(value)


def _plugin_names(config: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for plugin in config.get("plugins", []):
        names.update(plugin if isinstance(plugin, dict) else [plugin])
    return names


def test_every_page_is_in_the_navigation() -> None:
    """Each docs/**/*.md is reachable from the nav, and the nav names no missing page."""
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    in_nav = list(_nav_files(_config()["nav"]))
    assert len(in_nav) == len(set(in_nav)), "a page is listed twice in mkdocs.yml's nav"
    missing = sorted(pages - set(in_nav))
    assert not missing, f"pages not in mkdocs.yml's nav (add them): {missing}"
    absent = sorted(set(in_nav) - pages)
    assert not absent, f"mkdocs.yml's nav names pages that do not exist: {absent}"


def test_the_site_builds_offline() -> None:
    """No plugin that downloads at build time, no web fonts, strict mode on."""
    config = _config()
    assert config["strict"] is True
    assert config["theme"]["name"] == "material"
    assert config["theme"]["font"] is False, "material would load Google Fonts"
    plugins = _plugin_names(config)
    assert not plugins & DOWNLOADING_PLUGINS, plugins & DOWNLOADING_PLUGINS
    assert {"search", "mkdocstrings"} <= plugins


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built by ``mkdocs build --strict`` into a throwaway directory."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr}"
    return out


@pytest.mark.default_env_only
def test_build_writes_every_page(site: Path) -> None:
    """Every page of the nav became an HTML page."""
    for page in _nav_files(_config()["nav"]):
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (site / html).is_file(), f"{page} was not built ({html})"


#: API page -> names its HTML must document (anchors mkdocstrings writes).
API_NAMES = {
    "api/amsdal_mail": [
        "amsdal_mail.send_mail",
        "amsdal_mail.get_connection",
        "amsdal_mail.EmailMessage",
        "amsdal_mail.SendStatus",
        "amsdal_mail.RecipientStatus",
    ],
    "api/config": ["amsdal_mail.config.resolve_smtp_settings", "amsdal_mail.config.SMTPSettings"],
    "api/oauth": ["amsdal_mail.oauth.microsoft", "amsdal_mail.oauth.google"],
    "api/django-backend": [
        "django_amsdal_mail.backend.EmailBackend",
        "django_amsdal_mail.mail.asend_mail",
    ],
    "api/django-signals": [
        "django_amsdal_mail.signals.pre_send",
        "django_amsdal_mail.signals.post_send",
    ],
    "api/tracking": ["amsdal_mail.tracking.parse_report"],
    "api/testing": ["django_amsdal_mail.testing.TestEmailBackend"],
    "api/outbox": [
        "django_amsdal_mail.outbox.enqueue",
        "django_amsdal_mail.outbox.backend.OutboxBackend",
    ],
}


@pytest.mark.default_env_only
@pytest.mark.parametrize("page", sorted(API_NAMES))
def test_api_reference_is_generated_from_the_docstrings(site: Path, page: str) -> None:
    """The API pages hold the public names with their docstrings' text."""
    html = (site / page / "index.html").read_text(encoding="utf-8")
    for name in API_NAMES[page]:
        assert f'id="{name}"' in html, f"{name} is not documented on {page}"
    # A docstring's text, not only a heading: a paragraph follows each name.
    assert len(re.findall(r'class="doc doc-contents', html)) >= len(API_NAMES[page])


@pytest.mark.default_env_only
def test_benchmark_chart_is_on_the_site(site: Path) -> None:
    """The chart that `make bench` writes is shown on the benchmarks page."""
    assert (site / "benchmarks.png").is_file()
    assert 'src="../benchmarks.png"' in (site / "benchmarks" / "index.html").read_text("utf-8")
