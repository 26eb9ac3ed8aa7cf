"""Notebook plumbing: install what a runtime lacks, save uploads and microphone recordings where
the notebook reads them, and players at true level."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .config import (MAX_FILE_NAME_BYTES, MAX_RECORD_SECONDS, MAX_UPLOAD_BYTES,
                     MIN_RECORD_SECONDS, SAMPLE_RATE, is_real_number)
from .markup import html_text
from .files import atomic_write
from .audio import AudioInputError, decode_recording, finite_audio, wav_bytes

RUNTIME_PACKAGES = {"librosa": "librosa", "soundfile": "soundfile", "tqdm": "tqdm",
                    "matplotlib": "matplotlib", "ipywidgets": "ipywidgets", "mido": "mido"}


# Colab's eval_js awaits the promise that recordMicrophone(ms) returns: the recording as base64.
# As in magenta's timbre-transfer Colab, the browser records in its own format (WebM/Opus in
# Chrome), which decode_recording turns into samples.
RECORDER_JS = """
async function recordMicrophone(ms) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = event => chunks.push(event.data);
  const stopped = new Promise(resolve => { recorder.onstop = resolve; });
  recorder.start();
  await new Promise(resolve => setTimeout(resolve, ms));
  recorder.stop();
  await stopped;
  stream.getTracks().forEach(track => track.stop());  // the browser's recording sign goes off
  const url = await new Promise(resolve => {
    const reader = new FileReader();
    reader.onloadend = () => resolve(reader.result);
    reader.readAsDataURL(new Blob(chunks, {type: recorder.mimeType}));
  });
  return url.slice(url.indexOf(",") + 1);  // "data:audio/webm;codecs=opus;base64,<data>"
}
"""
PLAYER_PEAK = 0.99  # what the loudest clip of a player table is turned down to, if it would clip


def install_missing(packages: dict = RUNTIME_PACKAGES) -> list[str]:
    """pip-install the runtime packages ({import name: pip name}) that are missing; never torch,
    so Colab keeps its CUDA build. Returns what was installed."""
    import importlib.util
    import subprocess
    import sys

    missing = [pip for module, pip in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing


def safe_upload_name(name: str) -> str:
    """A bare file name from an uploaded name: no folders (`../../x.wav` -> `x.wav`), no leading
    dots, no characters outside letters, digits and `-_. `, at most MAX_FILE_NAME_BYTES (the
    stem is shortened, the suffix kept). Raises ValueError if nothing is left."""
    if not isinstance(name, str):
        raise ValueError(f"{name!r} is not a usable file name (not text)")
    base = name.replace("\\", "/").split("/")[-1]
    cleaned = "".join(c if c.isalnum() or c in "-_. " else "_" for c in base).strip().lstrip(".")
    if not cleaned:
        raise ValueError(f"{name!r} is not a usable file name")
    return _fit_name(Path(cleaned).stem, Path(cleaned).suffix)


def _fit_name(stem: str, suffix: str) -> str:
    """stem + suffix in at most MAX_FILE_NAME_BYTES of UTF-8, cutting the stem."""
    room = MAX_FILE_NAME_BYTES - len(suffix.encode())
    if room < 1:  # "a.<300 letters>": the suffix is no suffix
        stem, suffix, room = stem + suffix, "", MAX_FILE_NAME_BYTES
    return stem.encode()[:room].decode(errors="ignore").rstrip() + suffix


def save_uploads(uploads, folder) -> list[Path]:
    """Write uploaded files into `folder` only: uploads is {name: bytes} (Colab's
    files.upload()) or a sequence of {"name", "content"} dicts (ipywidgets 8 FileUpload.value).
    Same-named uploads are kept apart (`x.wav`, `x_2.wav`). An upload that cannot be saved (no
    usable name, over MAX_UPLOAD_BYTES, not bytes, a failed write) is skipped with a warning
    naming it and why; the others are saved. Returns the written paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = uploads.items() if isinstance(uploads, dict) else (
        (item.get("name"), item.get("content")) if isinstance(item, dict) else (item, None)
        for item in uploads)
    written = []
    for name, content in items:
        try:
            written.append(_save_upload(name, content, folder, written))
        except (ValueError, OSError) as err:
            warnings.warn(f"upload {name!r} skipped: {err}", stacklevel=2)
    return written


def _save_upload(name, content, folder: Path, taken: list) -> Path:
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise ValueError(f"its content is {type(content).__name__}, not bytes")
    size = memoryview(content).nbytes
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{size} bytes, more than MAX_UPLOAD_BYTES={MAX_UPLOAD_BYTES}")
    target = folder / safe_upload_name(name)
    stem, suffix, n = target.stem, target.suffix, 2
    while target.exists() or target in taken:
        target = folder / _fit_name(stem, f"_{n}{suffix}")
        n += 1
    return atomic_write(target, lambda tmp, data=bytes(content): Path(tmp).write_bytes(data))


def record_microphone(seconds: float, folder) -> Path | None:
    """In Colab: record `seconds` from the browser's microphone (the browser asks for permission
    the first time), decode it (decode_recording) and save it into `folder` as an upload is
    saved, as a float wav named recording_<date>-<time>.wav; returns its path. Outside Colab
    there is no browser to ask: returns None and does nothing. Raises ValueError for `seconds`
    that is no real number (any int or float type but bool), not finite, or outside
    MIN_RECORD_SECONDS..MAX_RECORD_SECONDS; RuntimeError when the browser recorded nothing
    (microphone refused or missing); AudioInputError when the browser's reply is not base64 or
    the recording is no audio, damaged or cut short (nothing is saved of it)."""
    import sys
    import time

    if "google.colab" not in sys.modules:
        return None
    seconds = recording_seconds(seconds)
    from google.colab import output
    from IPython.display import Javascript, display

    display(Javascript(RECORDER_JS))
    print(f"Recording {seconds:g} s from the microphone...", flush=True)
    try:
        encoded = output.eval_js(f"recordMicrophone({round(seconds * 1000)})")
    except Exception as err:  # Colab passes the browser's error on as its own exception type
        raise RuntimeError(f"the browser recorded nothing ({err}): allow this page to use the "
                           "microphone, then run the cell again") from err
    name = time.strftime("recording_%Y%m%d-%H%M%S.wav")
    audio = decode_recording(browser_bytes(encoded, name), name=name, expected_seconds=seconds)
    return _save_upload(name, wav_bytes(audio, name=name), Path(folder), [])


def recording_seconds(seconds) -> float:
    """How long to record, as a float: any real number (numpy's too) but a bool, finite, within
    MIN_RECORD_SECONDS..MAX_RECORD_SECONDS; else ValueError saying so."""
    limits = (f"from MIN_RECORD_SECONDS={MIN_RECORD_SECONDS:g} to MAX_RECORD_SECONDS="
              f"{MAX_RECORD_SECONDS:g} s")
    if not is_real_number(seconds):  # numpy's bool is no real number either
        raise ValueError(f"cannot record {seconds!r} s: the length is a number of seconds, not "
                         f"{type(seconds).__name__}, {limits}")
    if not MIN_RECORD_SECONDS <= float(seconds) <= MAX_RECORD_SECONDS:  # NaN compares False
        raise ValueError(f"cannot record {seconds!r} s: {limits}")
    return float(seconds)


def browser_bytes(encoded, name: str) -> bytes:
    """The recording's bytes from the browser's reply (RECORDER_JS: base64 text). An empty
    reply is RuntimeError (the browser recorded nothing); a reply that is not base64 text is
    AudioInputError naming the recording and what the reply was."""
    import base64

    if not isinstance(encoded, str):
        raise AudioInputError(name, f"the browser's reply is a {type(encoded).__name__}, not "
                                    "base64 text; run the cell again")
    if not encoded:
        raise RuntimeError("the browser recorded nothing (an empty reply): check the "
                           "microphone, then run the cell again")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError as err:  # binascii.Error; non-ASCII text
        raise AudioInputError(name, f"the browser's reply is not a base64 recording ({err}; it "
                                    f"begins {encoded[:40]!r}); run the cell again") from None


def playback_gain(clips, peak: float = PLAYER_PEAK) -> float:
    """One gain for clips played side by side: 1 unless the loudest sample of any clip would
    clip, then what brings it to `peak`. The same gain for all keeps their relative level."""
    loudest = max((float(np.max(np.abs(c))) for c in clips if c is not None and len(c)),
                  default=0.0)
    return peak / loudest if loudest > 1.0 else 1.0


def gain_note(gain: float) -> str:
    """What a table of players says about the gain applied to all of them ('' for none)."""
    if gain == 1.0:
        return ""
    return (f"<p><i>All players here are turned down together by {-20 * np.log10(gain):.1f} dB "
            "so that the loudest does not clip; their levels relative to each other are "
            "true.</i></p>")


def audio_player(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, gain: float | None = None
                 ) -> str:
    """HTML <audio> element of a clip [N] at its true level (no normalisation) times `gain`
    (default: playback_gain of this clip alone, with a line saying so when it is not 1)."""
    from IPython.display import Audio

    audio = finite_audio(audio, name="audio player")
    own = gain is None
    gain = playback_gain([audio]) if own else gain
    html = Audio(audio * gain, rate=sample_rate, normalize=False)._repr_html_()
    return html + gain_note(gain) if own else html


def players_table(rows: dict, columns) -> str:
    """HTML table of players: rows {label: {column: audio [N] or None}}, all at one gain
    (playback_gain), so a louder clip sounds louder; renders in Jupyter, Colab and on GitHub.
    Labels and column names are escaped (markup.html_text): they show as written."""
    gain = playback_gain([clip for clips in rows.values() for clip in clips.values()])
    head = "".join(f"<th>{html_text(c)}</th>" for c in ["file", *columns])
    body = ""
    for label, clips in rows.items():
        cells = "".join("<td>-</td>" if clips.get(c) is None else
                        f"<td>{audio_player(clips[c], gain=gain)}</td>" for c in columns)
        body += f"<tr><td>{html_text(label)}</td>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>{gain_note(gain)}"
