"""The example project in a real browser: headless Chromium driven by Selenium.

The project's own server (``manage.py runserver`` on a free port of 127.0.0.1, its
own settings, a throwaway SQLite database) sends through the outbox with the
``immediate`` engine (in the request, on commit) to a recording SMTP server that
refuses ``nobody@example.com`` for good and ``busy@example.com`` for now. The test
sends the form, reads the statuses page, logs in to the admin and filters the outbox
by recipient status, as a person would, and takes a screenshot of each page.

The screenshots go to a throwaway directory; with ``AMSDAL_DOCS_SCREENSHOTS=1``
(``make screenshots``) they replace ``docs/img/*.png``, which
``docs/example-project.md`` shows, so an ordinary run never changes tracked files.

Chromium and chromedriver are Debian's (``make services`` installs them). Where they
cannot start, the test skips with the reason, except under ``CI=true``, where that is
a failure. It runs in one environment only, the default one (Python 3.11 + Django
5.2): a browser session takes several seconds, and what it checks (the project's
templates and the admin's pages in a browser) does not change with the Django
version, which the test-client tests in ``tests/django/test_example_project.py`` run
on every version of the matrix.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smtpd import RecordingServer

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "example_project" / "manage.py"
DOCS_IMG = ROOT / "docs" / "img"
SCREENSHOTS = ("compose", "sent", "admin-outbox", "admin-message")
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "chromium")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
ADMIN_PASSWORD = "browser-test-password"
#: How long to wait for the server to answer, or for a page to show something.
WAIT = 30.0

pytestmark = [
    pytest.mark.default_env_only,  # once, in the Django 5.2 environment (see the docstring)
    # The project's server has its own database; this process touches none.
]


def _unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under CI=true, where the browser must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the browser cannot run: {reason}")
    print(f"skipping the browser test: {reason}")
    pytest.skip(reason)


def _which(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate) if "/" not in candidate else candidate
        if found and os.access(found, os.X_OK):
            return found
    return None


def _free_port() -> int:
    """Return a port of 127.0.0.1 that was free a moment ago (runserver needs a number)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _manage_env(db: Path, smtp: RecordingServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        EXAMPLE_DB_PATH=str(db),
        EXAMPLE_EMAIL_HOST=smtp.host,
        EXAMPLE_EMAIL_PORT=str(smtp.port),
        EXAMPLE_OUTBOX_ENGINE="immediate",
        PYTHONUNBUFFERED="1",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stderr}"


def _wait_for_http(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers (bounded); fail with the server's log if it never does."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"runserver exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)  # polling interval of a bounded wait, not a synchronisation
    pytest.fail(f"runserver did not answer {url} within {WAIT} s:\n{log.read_text()}")


@pytest.fixture
def smtp() -> Iterator[RecordingServer]:
    """The project's SMTP server: 550 for nobody@, 450 for busy@, 250 for the rest."""
    with RecordingServer(
        rcpt_replies={
            "nobody@example.com": "550 5.1.1 No such user here",
            "busy@example.com": "450 4.2.1 Mailbox busy, try again later",
        }
    ) as server:
        yield server


@pytest.fixture
def site(tmp_path: Path, smtp: RecordingServer) -> Iterator[str]:
    """The example project served by runserver on a free port; yields its base URL."""
    env = _manage_env(tmp_path / "db.sqlite3", smtp)
    _manage(env, "migrate", "--noinput")
    _manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
    )
    port = _free_port()
    log = tmp_path / "runserver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", "--noreload", f"127.0.0.1:{port}"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_http(f"{base}/", server, log)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium (Debian's) through chromedriver, with a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # pragma: no cover - selenium is a dev dependency
        _unavailable(f"selenium is not installed ({exc})")
    chromium = _which(CHROMIUM_CANDIDATES)
    chromedriver = _which(CHROMEDRIVER_CANDIDATES)
    if chromium is None or chromedriver is None:
        _unavailable(
            "Chromium or chromedriver not found (Debian: apt-get install chromium "
            "chromium-driver, or make services)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    for flag in (
        "--headless",
        "--no-sandbox",  # we may run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # The driver is given by path, so Selenium Manager never looks for (or downloads) one.
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        _unavailable(f"Chromium did not start: {exc.msg}")
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_until(driver: Any, what: str, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(condition, message=what)


def _shoot(driver: Any, name: str, into: Path) -> Path:
    """Save a screenshot of the whole page as ``into/name.png``; return its path."""
    from selenium.webdriver.common.by import By

    height = driver.find_element(By.TAG_NAME, "body").size["height"]
    driver.set_window_size(1200, max(600, min(height + 40, 1600)))
    path = into / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
    return path


def test_send_the_form_see_the_statuses_and_filter_the_outbox_in_the_admin(
    site: str, smtp: RecordingServer, browser: Any, tmp_path: Path
) -> None:
    """A person's path through the example project, in Chromium; a screenshot of each page."""
    from selenium.webdriver.common.by import By

    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = browser

    # Compose: fill the form as a person would and send it.
    driver.get(f"{site}/")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Compose"
    driver.find_element(By.NAME, "to").send_keys(
        "alice@example.com, nobody@example.com, busy@example.com"
    )
    driver.find_element(By.NAME, "subject").send_keys("Quarterly report")
    driver.find_element(By.NAME, "message").send_keys("Numbers are up.\nSee the attachment.")
    _shoot(driver, "compose", shots)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # Sent: the redirect shows the outbox row of each recipient and the recorded attempt.
    _wait_until(driver, "the statuses page", lambda d: d.current_url == f"{site}/sent/")
    page = driver.find_element(By.TAG_NAME, "body").text
    assert "Message queued in the outbox" in page
    outbox_rows = {
        cells[3]: cells[4:6]
        for row in driver.find_elements(By.CSS_SELECTOR, "#outbox tr")[1:]
        if (cells := [c.text for c in row.find_elements(By.TAG_NAME, "td")])
    }
    assert outbox_rows == {
        "alice@example.com": ["sent", "250"],
        "nobody@example.com": ["rejected", "550"],
        "busy@example.com": ["failed", "450"],
    }
    recorded = {
        cells[1]: (cells[2], cells[3])
        for row in driver.find_elements(By.CSS_SELECTOR, "#sent tr")[1:]
        if (cells := [c.text for c in row.find_elements(By.TAG_NAME, "td")])
    }
    assert recorded["busy@example.com"] == ("failed", "450")
    # What the server received: the accepted recipient only, once.
    assert [m.rcpt_tos for m in smtp.messages] == [["alice@example.com"]]
    _shoot(driver, "sent", shots)

    # The admin: log in, open the outbox, filter by recipient status "failed".
    driver.get(f"{site}/admin/login/?next=/admin/amsdal_outbox/outboxmessage/")
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    _wait_until(
        driver,
        "the outbox changelist",
        lambda d: d.current_url.endswith("/admin/amsdal_outbox/outboxmessage/"),
    )
    driver.find_element(By.CSS_SELECTOR, 'a[href="?recipient_status=failed"]').click()
    _wait_until(
        driver, "the filtered changelist", lambda d: "recipient_status=failed" in d.current_url
    )
    results = driver.find_element(By.ID, "result_list").text
    assert "Quarterly report" in results
    # Still queued (the 450 is retried later), with its recipients counted per status.
    assert "Queued" in results
    assert "3: 1 sent, 1 failed, 1 rejected" in results
    _shoot(driver, "admin-outbox", shots)

    # A filter that matches nothing shows nothing: the filter really filters.
    driver.find_element(By.CSS_SELECTOR, 'a[href="?recipient_status=invalid"]').click()
    _wait_until(
        driver, "the empty changelist", lambda d: "recipient_status=invalid" in d.current_url
    )
    assert not driver.find_elements(By.ID, "result_list")
    assert "0 outbox messages" in driver.find_element(By.ID, "changelist").text.lower()

    # One message: its recipients with their codes and the server's replies.
    driver.back()
    _wait_until(driver, "the filtered changelist again", lambda d: "failed" in d.current_url)
    driver.find_element(By.LINK_TEXT, "Quarterly report").click()
    _wait_until(driver, "the message page", lambda d: "/change/" in d.current_url)
    content = driver.find_element(By.ID, "content").text
    assert "4.2.1 Mailbox busy, try again later" in content
    assert "5.1.1 No such user here" in content
    _shoot(driver, "admin-message", shots)

    for name in SCREENSHOTS:
        data = (shots / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000, name
    if os.environ.get("AMSDAL_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name in SCREENSHOTS:
            shutil.copyfile(shots / f"{name}.png", DOCS_IMG / f"{name}.png")
