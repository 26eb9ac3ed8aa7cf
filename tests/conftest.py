"""Shared fixtures. The bundled tones' features (pYIN is ~1 s per file) are computed once per
session; everything else builds small synthetic signals. Unusable files (BAD_FILES) are made
here for the audio and the feature tests alike."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("MPLBACKEND", "Agg")  # figures are drawn, never shown
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from grown_timbres.config import HOP_LENGTH, N_MFCC, SAMPLE_RATE  # noqa: E402
from grown_timbres.batching import collate  # noqa: E402
from grown_timbres.features import compile_feature_kernels, extract_features  # noqa: E402

# One intra-op thread by default (DDSP_TEST_THREADS=2 for two). The models here are small: on an
# idle 2-core machine 1 and 2 threads train at the same speed (about 75 ms per step), but when
# anything else is running (a notebook, a second pytest), 2 OpenMP threads wait on each other at
# every op and steps intermittently take 10 to 100 times longer.
torch.set_num_threads(max(1, min(2, int(os.environ.get("DDSP_TEST_THREADS", "1")))))

TONE_DIR = REPO_ROOT / "scale_tones"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# 1.5 s of a 440 Hz sine as Chrome records it (WebM/Opus): tests/test_audio.py says how it was made
RECORDING_FIXTURE = FIXTURES / "recording_440hz.webm"
FIRST_MIDI = 60  # 01_C4.wav .. 12_B4.wav are MIDI 60..71, chromatic


def cents(f_hz, ref_hz) -> float:
    return float(1200.0 * np.log2(f_hz / ref_hz))


def midi_to_hz(midi) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def spectrum_db(x: np.ndarray, sample_rate: int = SAMPLE_RATE, window: str = "blackmanharris",
                n_fft: int | None = None):
    """(freqs, magnitude dB re. the largest bin) of a windowed, optionally zero-padded FFT."""
    import scipy.signal

    x = np.asarray(x, dtype=np.float64)
    w = scipy.signal.get_window(window, len(x))
    mag = np.abs(np.fft.rfft(x * w, n_fft or len(x)))
    freqs = np.fft.rfftfreq(n_fft or len(x), 1.0 / sample_rate)
    return freqs, 20 * np.log10(mag / mag.max() + 1e-300)


def peak_frequency(x: np.ndarray, sample_rate: int, fmin: float = 20.0, pad: int = 4) -> float:
    """Frequency of the strongest spectral peak: Hann window, zero-padded FFT, parabolic
    interpolation on log magnitude."""
    x = np.asarray(x, dtype=np.float64)
    n_fft = pad * len(x)
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mag[freqs < fmin] = 0
    i = int(np.argmax(mag))
    a, b, c = np.log(mag[i - 1: i + 2] + 1e-300)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((i + offset) * sample_rate / n_fft)


def small_inputs(batch=2, n_frames=40, seed=0):
    """Model inputs of `batch` steady notes from 200 to 600 Hz at -30 dB, random MFCCs:
    f0 [B, T, 1], loudness [B, T, 1], mfcc [B, T, N_MFCC]."""
    g = torch.Generator().manual_seed(seed)
    f0 = torch.linspace(200, 600, batch)[:, None, None].expand(batch, n_frames, 1).contiguous()
    loudness = torch.full((batch, n_frames, 1), -30.0)
    mfcc = torch.randn(batch, n_frames, N_MFCC, generator=g)
    return f0, loudness, mfcc


def batch_from_features(features: list[dict]) -> dict:
    """The padded batch load_multiple_files would build from these features (no second pYIN)."""
    return collate(features)


def batch_of_rows(padded: dict, paths=None) -> dict:
    """A hand-made padded batch (f0 [B, T, 1], loudness [B, T, 1], mfcc [B, T, N_MFCC],
    audio [B, T * HOP_LENGTH], lengths [B]; voiced optional) as batching.collate batches it:
    row i is a file of lengths[i] frames, one training example (beyond its length, f0 and MFCCs
    are held and loudness floored, as collate pads)."""
    features = []
    for i, n in enumerate(padded["lengths"].tolist()):
        voiced = padded["voiced"][i, :n] if "voiced" in padded else torch.ones(n, dtype=torch.bool)
        features.append({"path": paths[i] if paths else f"row_{i}.wav",
                         "f0": padded["f0"][i, :n, 0].numpy(), "voiced": voiced.numpy(),
                         "loudness": padded["loudness"][i, :n, 0].numpy(),
                         "mfcc": padded["mfcc"][i, :n].numpy(),
                         "audio": padded["audio"][i, : n * HOP_LENGTH].numpy()})
    return collate(features)


def skip_or_fail(message: str):
    """Skip a test whose tools are missing; with CI=true, fail instead (`.ci/run` installs
    them, so a missing tool there is a broken CI, not a reason to test less)."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI is set, so this is no skip: {message}", pytrace=False)
    pytest.skip(message)


def headless_chromium(*arguments: str, capabilities: dict | None = None):
    """A selenium driver of headless Chromium under Debian's chromedriver, with `arguments` and
    `capabilities` added (the caller quits it); skip_or_fail when chromium, chromedriver or
    selenium is missing."""
    import shutil

    missing = [f"{tool} (apt-get install -y {package})" for tool, package in
               (("chromium", "chromium"), ("chromedriver", "chromium-driver"))
               if shutil.which(tool) is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -r requirements.txt)")
    if missing:
        skip_or_fail(f"the browser test needs {', '.join(missing)}")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *arguments):
        options.add_argument(argument)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.fixture
def ffmpeg():
    """ffmpeg's path, which decoding a browser's recording needs; skip_or_fail without it."""
    import shutil

    path = shutil.which("ffmpeg")
    if path is None:
        skip_or_fail("decoding a browser's recording needs ffmpeg (apt-get install -y ffmpeg)")
    return path


@pytest.fixture(scope="session")
def tone_paths() -> list[Path]:
    paths = sorted(TONE_DIR.glob("*.wav"))
    assert len(paths) == 12, paths
    return paths


@pytest.fixture(scope="session")
def bundled_features(tone_paths) -> list[dict]:
    """extract_features of all 12 bundled tones, computed once per session, in two processes
    (pYIN is single-threaded numpy; the machine has 2 cores)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_feature_kernels()  # before the fork: concurrent numba compiles corrupt its cache
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            return list(pool.map(extract_features, tone_paths))


@pytest.fixture(scope="session")
def bundled_batch(bundled_features) -> dict:
    return batch_from_features(bundled_features)


@pytest.fixture
def write_wav_file(tmp_path):
    """write_wav_file(name, data, rate=22050, subtype='FLOAT') -> Path (soundfile, any subtype)."""
    import soundfile as sf

    def write(name, data, rate=SAMPLE_RATE, subtype="FLOAT"):
        path = tmp_path / name
        sf.write(str(path), np.asarray(data), rate, subtype=subtype, format="WAV")
        return path

    return write


def _tone(n=SAMPLE_RATE, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)


def make_missing(tmp_path):
    return tmp_path / "missing.wav"


def make_empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def make_text(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 20)
    return path


def make_truncated(tmp_path):
    path = tmp_path / "truncated.wav"
    sf.write(str(path), _tone(), SAMPLE_RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:20])
    return path


def make_zero_frames(tmp_path):
    path = tmp_path / "zero_frames.wav"
    sf.write(str(path), np.zeros(0, np.float32), SAMPLE_RATE, subtype="PCM_16")
    assert sf.info(str(path)).frames == 0
    return path


def make_all_zero(tmp_path):
    path = tmp_path / "all_zero.wav"
    sf.write(str(path), np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, subtype="PCM_16")
    return path


def make_non_finite(value, index):
    """A maker of a float wav holding `value` (NaN or inf) at sample `index`."""
    def make(tmp_path):
        path = tmp_path / f"{value}.wav"
        data = _tone()
        data[index] = value
        sf.write(str(path), data, SAMPLE_RATE, subtype="FLOAT")
        return path
    return make


make_nan = make_non_finite(np.nan, 1000)
make_inf = make_non_finite(np.inf, 5000)


def make_folder(tmp_path):
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


def make_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(str(path), _tone(1000), SAMPLE_RATE, subtype="PCM_16")
    return path


BAD_FILES = {  # maker, a word the reason must contain
    "missing": (make_missing, "not found"),
    "folder": (make_folder, "not a regular file"),
    "empty": (make_empty, "empty"),
    "text": (make_text, "not a readable audio file"),
    "truncated": (make_truncated, "not a readable audio file"),
    "zero_frames": (make_zero_frames, "no audio samples"),
    "all_zero": (make_all_zero, "silent"),
    "nan": (make_nan, "NaN"),
    "inf": (make_inf, "infinite"),
    "too_short": (make_too_short, "too short"),
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in headless Chromium (deselect: -m 'not browser')")
