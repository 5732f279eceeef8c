"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a running
`edgeline web` process over a database filled by a real `edgeline demo` run.

Checks what an operator sees: the counts the database holds, a unit found by its MAC, and its timeline
with the same stage times as `edgeline audit unit`. A screenshot of every page is saved under the
artifacts directory printed by the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_for_port
from e2e_helpers import REPO, edgeline
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
UNITS = 6
pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A demo run's database, a viewer token, and `edgeline web` serving it on a free port."""
    work = tmp_path_factory.mktemp("web")
    env = {"EDGELINE_DATABASE_URL": f"sqlite:///{work / 'line.db'}", "EDGELINE_STATE_DIR": str(work)}
    demo = edgeline("demo", "--units", str(UNITS), "--stations", "2", env=env, timeout=240)
    assert demo.returncode == 0, demo.stderr[-2000:]
    created = edgeline("web", "token", "create", "--role", "viewer", "--name", "browser-test", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "web", "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, **env},
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=60)
        yield {"env": env, "base": f"http://127.0.0.1:{port}", "token": created.stdout.splitlines()[-1]}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium; never a downloaded browser."""
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def _artifacts_dir() -> Path:
    """Outside pytest's basetemp, which other runs on a shared machine rotate away."""
    root = Path(os.environ.get("EDGELINE_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "edgeline-artifacts"))
    path = root / f"web-dashboard-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True)
    return path


def _audit(env: dict[str, str], *args: str) -> Any:
    result = edgeline("audit", *args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dashboard_shows_the_database_counts_and_a_units_timeline(
    line: dict[str, Any], browser: Browser
) -> None:
    artifacts = _artifacts_dir()
    print(f"\nscreenshots in {artifacts}")
    units = _audit(line["env"], "units")
    by_state = Counter(u["state"] for u in units)
    assert sum(by_state.values()) == UNITS
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()

    page.goto(f"{line['base']}/?token={line['token']}")
    assert "token" not in page.url, "the token must be stripped from the address bar"
    cookie = next(c for c in context.cookies() if c["name"] == "edgeline_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator('[data-count="total"]').inner_text() == str(UNITS)
    for state, count in by_state.items():
        assert page.locator(f'[data-state="{state}"]').inner_text() == str(count)
    page.wait_for_function(
        "document.getElementById('updated').textContent.startsWith('updated')", timeout=30_000
    )
    page.screenshot(path=str(artifacts / "live.png"), full_page=True)

    unit = units[0]
    mac_as_typed = unit["mac"].upper().replace(":", "-")
    page.fill('header input[name="q"]', mac_as_typed)
    page.click('header button[type="submit"]')
    page.wait_for_url("**/units?q=*")
    rows = page.locator("#units tr").filter(has=page.locator("td"))
    assert rows.count() == 1
    page.screenshot(path=str(artifacts / "search.png"), full_page=True)

    page.click(f"text={unit['registration_id']}")
    page.wait_for_selector("#stage-times")
    expected = _audit(line["env"], "unit", unit["mac"])["unit"]
    shown = {
        row.get_attribute("data-stage"): row.locator(".at").inner_text()
        for row in page.locator("#stage-times tr").all()
    }
    stage_times = {
        k.removesuffix("_at"): v
        for k, v in expected.items()
        if k.endswith("_at") and v and k not in ("created_at", "updated_at")
    }
    assert shown == stage_times
    assert page.locator("#mac").inner_text() == unit["mac"]
    page.screenshot(path=str(artifacts / "timeline.png"), full_page=True)
    context.close()


def test_dashboard_without_a_token_is_refused(line: dict[str, Any], browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{line['base']}/")
    assert response is not None and response.status == 401
    assert "token" in page.inner_text("main")
    bad = page.goto(f"{line['base']}/?token=elt_not-a-real-token")
    assert bad is not None and bad.status == 401 and "token" not in page.url
    context.close()


def test_demo_serves_the_dashboard_and_prints_its_link(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "EDGELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "demo", "--units", "40", "--web", f"127.0.0.1:{port}"],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stderr is not None
        link = next(
            line.split("dashboard at ", 1)[1].strip() for line in demo.stderr if "dashboard at " in line
        )
        assert link.startswith(f"http://127.0.0.1:{port}/?token=elt_")
        with httpx.Client(follow_redirects=True, timeout=30) as client:
            page = client.get(link)
            assert page.status_code == 200 and str(page.url) == f"http://127.0.0.1:{port}/"
            assert 'data-count="total"' in page.text
        assert demo.wait(timeout=240) == 0
    finally:
        demo.kill()
        demo.wait()
