"""The Colab recorder's JavaScript (grown_timbres.notebook.RECORDER_JS) in a real browser:
headless Chromium with its fake microphone (a beep every second) records through MediaRecorder as
Chrome does in Colab, and what the script hands back is base64 of WebM/Opus that decode_recording
reads. selenium's execute_async_script stands in for Colab's eval_js (both await the promise).
Skipped when the browser, its driver, selenium or ffmpeg is missing, unless CI=true: then that is
a failure (`.ci/run` installs them)."""
import base64

import numpy as np
import pytest

from grown_timbres.audio import decode_recording
from grown_timbres.config import SAMPLE_RATE
from grown_timbres.notebook import RECORDER_JS
from conftest import headless_chromium

pytestmark = pytest.mark.browser

SECONDS = 1.5
CALL = """const done = arguments[arguments.length - 1];
recordMicrophone(arguments[0]).then(done, error => done("no recording: " + error));"""


def test_the_recorder_script_records_webm_opus_that_decodes(ffmpeg, tmp_path):
    driver = headless_chromium("--use-fake-device-for-media-stream",
                               "--use-fake-ui-for-media-stream")  # the microphone, allowed
    try:
        page = tmp_path / "page.html"
        page.write_text("<!doctype html><title>recorder</title>")
        driver.get(page.as_uri())  # a file: page is a secure context, which getUserMedia needs
        driver.set_script_timeout(30)
        encoded = driver.execute_async_script(RECORDER_JS + CALL, round(SECONDS * 1000))
    finally:
        driver.quit()
    assert not encoded.startswith("no recording"), encoded
    data = base64.b64decode(encoded, validate=True)
    assert data[:4] == b"\x1a\x45\xdf\xa3" and b"webm" in data[:64] and b"A_OPUS" in data
    audio = decode_recording(data, expected_seconds=SECONDS)  # neither damaged nor cut short
    assert abs(len(audio) / SAMPLE_RATE - SECONDS) < 0.25, len(audio) / SAMPLE_RATE
    assert np.max(np.abs(audio)) > 0.1  # the fake microphone's beep, not silence
