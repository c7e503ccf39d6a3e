"""Operating livedub: the dashboard in a real headless Chromium, Flower, and /metrics from every pool."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import local_stack
from worker.devstack.samples import make_video

pytestmark = [pytest.mark.e2e, pytest.mark.solo, pytest.mark.timeout(300)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def run(tmp_path_factory, media_dir):
    """One stack with Flower; a 12 s speech stream dubbed while the dashboard is open."""
    video = make_video(media_dir / "count12ops.flv", 12, speech=True)
    tmp = tmp_path_factory.mktemp("ops")
    with local_stack(tmp / "run", "--engine", "echo", "--flower") as stack:
        browser = chrome()
        try:
            browser.get(stack.state["dashboard_url"] + "#token=" + stack.state["viewer_token"])
            WebDriverWait(browser, 10).until(lambda b: "updated" in b.find_element(By.ID, "updated").text)
            dub = subprocess.Popen([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(tmp / "o.mp4"),
                                    "--state-file", str(stack.run_dir / "state.json"), "--stream-id", "ops1"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            yield stack, browser, dub
        finally:
            browser.quit()


def chrome():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def test_dashboard_shows_the_streams_segments_and_transcripts_live(run):
    stack, browser, dub = run
    # The page was open before the stream started: what appears comes from its own refresh.
    # The page re-renders every refresh, so read it in one script call and click with retries.
    wait = WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, 'tr.stream[data-id="ops1"]'))
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, 'tr.stream[data-id="ops1"]').click() or True)

    def two_dubbed(b):
        rows = b.execute_script(
            "return [...document.querySelectorAll('#segments tr.segment')]"
            ".map(r => [r.children[2].innerText, r.querySelector('.transcript').innerText])")
        return len([1 for status, transcript in rows if status == "processed" and "[echo]" in transcript]) >= 2

    WebDriverWait(browser, 60).until(two_dubbed)
    text = browser.find_element(By.ID, "detail").text
    assert "ops1" in text and "[echo]" in text
    assert "rtmp://" in browser.find_element(By.ID, "links").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    out, err = dub.communicate(timeout=120)
    assert dub.returncode == 0, err + out


def test_flower_lists_a_worker_for_every_queue(run):
    stack, _, _ = run
    flower = stack.state["flower_url"]
    assert requests.get(f"{flower}/workers", timeout=10).status_code == 200
    workers = requests.get(f"{flower}/api/workers", params={"refresh": "true"}, timeout=30).json()
    served = {q["name"] for w in workers.values() for q in w.get("active_queues", [])}
    assert served >= {"ingest", "sts", "collect", "remux", "publish"}, served


def scrape(api):
    return requests.get(f"{api}/metrics", timeout=5).text


def value(text, name, **labels):
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(sel)}\}} (\S+)$" if sel else rf"^{re.escape(name)} (\S+)$",
                  text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_add_up_across_every_pool(run):
    stack, _, dub = run
    if dub.poll() is None:
        dub.communicate(timeout=120)
    text = scrape(stack.api)
    assert value(text, "livedub_segments_total", status="processed") == 2  # publish pool
    assert value(text, "media_service_worker_segments_processed_total", type="audio") == 2
    for stage in ("extract", "sts_rtt", "collect", "remux"):  # ingest, sts, collect, remux pools
        assert value(text, "livedub_stage_duration_seconds_count", stage=stage) == 2, stage
    assert value(text, "livedub_glass_to_glass_seconds_count") == 2
    assert value(text, "livedub_output_av_offset_seconds_count", edge="start") == 2
    assert value(text, "livedub_queue_depth", queue="sts") == 0
    assert value(text, "livedub_streams", state="ended") >= 1
