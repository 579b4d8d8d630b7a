"""`make demo` from a fresh folder: a short story, every step green, under 55 lines; then `make ui` on what
it made: the product in a real local Airflow, driven in headless Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from bhv360_backup.demo.servers import free_port

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG"))}
    result = subprocess.run([sys.executable, "-m", "bhv360_backup.demo"], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=600)
    return folder, env, result


def test_the_demo_tells_a_short_story(demo_folder):
    folder, _, result = demo_folder
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(lines) < 55, result.stdout
    assert not any("[info" in line or "::group::" in line for line in lines), "Airflow's records reached the terminal"
    story = result.stdout
    assert "database backup" in story and "verified in local and s3" in story
    assert "0 copied and 282 reused" in story  # the second storage run transfers nothing
    assert "the restored database has drill_due: the planned drill, not yet incident mode" in story
    assert (folder / ".demo" / "airflow.log").stat().st_size > 10_000


def test_the_demo_shows_the_projects_config_diff_and_a_dry_run_plan_for_a_new_project(demo_folder):
    _, _, result = demo_folder
    story = result.stdout
    diff = re.search(r"config backup (\S+) \(.*\), changed since the previous one:\n((?:  .*\n)+)", story)
    assert diff, story
    assert diff[2].split() == ["auth.disable_signup:", "changed", "auth.external_google_secret:", "changed",
                               "auth.jwt_exp:", "changed"]
    assert "rotated-in-the-dashboard" not in story  # a secret reads as changed, never as its value
    plan = story[story.index("dry run of the config restore into new project"):]
    assert f"config backup {diff[1]} " in plan  # the newest config backup, not one an earlier run's conf chose
    assert "functions.notify-team" in plan and "auth.external_google_enabled" in plan
    assert "only an operator can set: auth_digests.hook_send_email_secrets, auth_digests.smtp_pass, " \
           "secrets[RESEND_API_KEY]" in plan


@pytest.fixture(scope="module")
def ui(demo_folder):
    folder, env, result = demo_folder
    assert result.returncode == 0, "make demo failed"
    process = subprocess.Popen([sys.executable, "-m", "bhv360_backup.demo.ui"], cwd=folder,
                               env={**env, "BHV360_UI_PORT": str(free_port())}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    said = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any("Ctrl-C" in line for line in said):
        line = process.stdout.readline()
        if not line:
            break
        said.append(line)
    text = "".join(said)
    found = re.search(r"Airflow UI: (http://\S+)/  login: (\S+) / (\S+)", text)
    if not found:
        process.kill()
        pytest.fail(f"make ui did not come up:\n{text}")
    yield {"base": found[1], "user": found[2], "password": found[3], "said": text, "process": process,
           "folder": folder}
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_make_ui_logs_in_shows_the_backups_and_restores_from_the_trigger_form(ui, tmp_path):
    from playwright.sync_api import sync_playwright

    base = ui["base"]
    newest_database = sorted(path.name for path in (ui["folder"] / ".demo" / "backups" / "database").iterdir()
                             if (path / "manifest.json").exists())[-1]
    assert "copied 0 backups" in ui["said"]  # SeaweedFS kept make demo's cloud copies on disk across the restart
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base)
        page.fill("input[name=username]", ui["user"])
        page.fill("input[name=password]", ui["password"])
        page.get_by_role("button", name="Sign In").click()
        page.wait_for_url(f"{base}/")

        # exact: once the home page has drawn its asset list, every "bhv360://backups/..." link matches too
        page.get_by_role("link", name="Backups", exact=True).click()
        dashboard = page.frame_locator("iframe").locator("#state .card[data-type='database']")
        assert newest_database in dashboard.inner_text(timeout=30_000)
        assert "local: verified" in dashboard.inner_text() and "s3: verified" in dashboard.inner_text()

        page.goto(f"{base}/dags/bhv360_restore")
        page.get_by_role("button", name="Trigger").first.click()
        form = page.get_by_role("dialog")
        form.locator("label:has(input[name=element_dry_run])").click()
        assert form.locator("input[name=element_dry_run]").is_checked()
        form.get_by_role("button", name="Trigger").click()
        page.wait_for_url(re.compile(r".*/dags/bhv360_restore/runs/.+"))
        run_id = page.url.rsplit("/runs/", 1)[1]

        token = requests.post(f"{base}/auth/token", json={"username": ui["user"], "password": ui["password"]},
                              timeout=10).json()["access_token"]
        run = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.get("state") not in ("success", "failed"):
            time.sleep(2)
            run = requests.get(f"{base}/api/v2/dags/bhv360_restore/dagRuns/{run_id}",
                               headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        assert run.get("state") == "success", run
        assert run["conf"]["dry_run"] is True and run["conf"]["paths"] == {"database": "latest"}

        page.goto(f"{base}/dags/bhv360_restore/runs/{run_id}/tasks/validate")
        log = page.get_by_text("dry run: validation passed, nothing will be restored")
        log.wait_for(timeout=30_000)
        assert newest_database in page.locator("body").inner_text()
        page.screenshot(path=str(tmp_path / "restore-log.png"))
        if os.environ.get("BHV360_SCREENSHOT_DIR"):
            page.screenshot(path=os.path.join(os.environ["BHV360_SCREENSHOT_DIR"], "airflow-restore-log.png"))
        browser.close()

    ui["process"].send_signal(signal.SIGINT)
    assert ui["process"].wait(timeout=60) == 0
