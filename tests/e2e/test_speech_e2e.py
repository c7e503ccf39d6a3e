"""Speech mode end to end: the whole local stack with the offline engine (Whisper tiny.en, Apertium,
espeak-ng), a stream of English sentences published in real time and the dubbed output recorded, while
the dashboard is open in a headless Chromium."""

import subprocess
import sys

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.support.wer import wer
from tests.e2e.test_operate import ARTIFACTS, chrome
from tests.support import local_stack
from worker.devstack.samples import make_video
from worker.media.analyze import analyze_file

pytestmark = [pytest.mark.e2e, pytest.mark.solo, pytest.mark.timeout(300)]
SCRIPT = ("The city council met this afternoon to discuss the new budget. Members argued for three hours "
          "about the roads. In the end they agreed to raise taxes. The mayor said the money will go to schools.")


def test_speech_mode_through_the_whole_stack_is_dubbed_whole_and_in_sync(tmp_path, media_dir):
    video = make_video(media_dir / "e2e-sentences.flv", 20, text=SCRIPT, channels=2)
    # Speech mode is the default (the other tests pin fixed mode). Whisper decodes with a beam of 5, as on
    # compose's GPU node: greedy decoding of these short espeak-ng units moved between WER 0.25 and 0.47
    # from run to run on the same cuts (one misheard word changes the next unit's prompt); beam 5 gave
    # 0.14 and 0.22, and speech mode keeps its slack with it (bench.speech).
    env = {"LIVEDUB_SEGMENTATION": "speech", "LIVEDUB_STS_BEAM_SIZE": "5"}
    with local_stack(tmp_path / "run", "--engine", "offline", env=env) as stack:
        browser = chrome()
        try:
            browser.get(stack.state["dashboard_url"] + "?stream=e2esp#token=" + stack.state["viewer_token"])
            dub = subprocess.run([sys.executable, "-m", "worker.cli", "dub", str(video), "-o", str(tmp_path / "o.mp4"),
                                  "--state-file", str(stack.run_dir / "state.json"), "--stream-id", "e2esp"],
                                 capture_output=True, text=True, timeout=200)
            wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#unit-table tr.unit")) >= 3)
            lanes = browser.execute_script(
                "return [...document.querySelectorAll('#timeline .lane')].map(l => l.querySelectorAll('.bar').length)")
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "dashboard-speech.png"))
        finally:
            browser.quit()
        rec = stack.stream("e2esp")
    assert dub.returncode == 0, dub.stderr + dub.stdout
    assert rec["state"] == "ended" and rec["segmentation"] == "speech", rec["reason"]
    units = rec["units"]
    assert 3 <= len(units) <= 8, [(u["start_s"], u["end_s"], u["cut"]) for u in units]
    assert all(u["status"] in ("processed", "fallback") for u in units)
    processed = [u for u in units if u["status"] == "processed"]
    assert len(processed) >= len(units) - 1, [(u["status"], u["reason"]) for u in units]
    heard = " ".join(u["transcript"] or "" for u in units)
    assert wer(SCRIPT, heard) <= 0.3, [(u["start_s"], u["end_s"], u["cut"], u["transcript"]) for u in units]
    assert all(u["translated_text"] for u in processed)
    assert all(s["status"] == "processed" for s in rec["segments"])
    out = analyze_file(tmp_path / "o.mp4")
    assert out.check(20.0, 0.15, 25) == []
    assert lanes[0] == len(rec["segments"]) and lanes[1] == len(units) and lanes[2] == len(processed), lanes
