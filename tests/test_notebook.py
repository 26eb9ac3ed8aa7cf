"""grown_timbres/notebook.py: uploads land inside their folder under clean, distinct names of
any valid length; an upload that cannot be saved is reported and the others are saved; a
microphone recording in Colab (eval_js stood in for) is saved and read like an upload, and
outside Colab nothing happens; players keep true relative levels; the side-by-side comparison
survives moving the folder."""
import base64
import re
import sys
import time
import types

import numpy as np
import pytest

from grown_timbres.audio import AudioInputError, load_audio, read_wav, write_wav
from grown_timbres.config import SAMPLE_RATE
from grown_timbres.model import DDSPModel
from grown_timbres.comparison import show_comparison
from grown_timbres.notebook import (playback_gain, players_table, record_microphone,
                                    safe_upload_name, save_uploads)
from grown_timbres.runs import make_run_record, save_run_record
from conftest import RECORDING_FIXTURE


@pytest.mark.parametrize("name, expected", [
    ("../../x.wav", "x.wav"), ("/etc/passwd.wav", "passwd.wav"),
    ("C:\\Users\\me\\tone.wav", "tone.wav"), ("..wav", "wav"), ("my tone (1).wav", "my tone _1_.wav"),
])
def test_upload_names_stay_inside_the_folder(name, expected):
    assert safe_upload_name(name) == expected


def test_unusable_upload_name_is_an_error():
    with pytest.raises(ValueError, match="not a usable file name"):
        safe_upload_name("../..")


def test_uploads_land_in_the_folder_and_same_names_are_kept_apart(tmp_path):
    folder = tmp_path / "uploads"
    colab_style = {"../../x.wav": b"one", "/abs/x.wav": b"two"}
    widget_style = ({"name": "x.wav", "content": memoryview(b"three")},)
    written = save_uploads(colab_style, folder) + save_uploads(widget_style, folder)
    assert [p.name for p in written] == ["x.wav", "x_2.wav", "x_3.wav"]
    assert [p.read_bytes() for p in written] == [b"one", b"two", b"three"]
    assert {p.parent for p in written} == {folder}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.wav", "x_2.wav", "x_3.wav"]


# ------------------------------------------------------------------ players and the comparison
def played_peaks(html: str) -> list[float]:
    """The peak of every clip an HTML table of players plays (their embedded wav data)."""
    import base64
    import io
    import re

    import soundfile as sf

    return [float(np.max(np.abs(sf.read(io.BytesIO(base64.b64decode(data)))[0])))
            for data in re.findall(r"data:audio/wav;base64,([A-Za-z0-9+/=]+)", html)]


def test_players_share_one_gain_that_keeps_relative_levels():
    """A resynthesis peaking at 1.5 beside a target at 0.5: both are played turned down by the
    same 20 log10(1.5 / 0.99) = 3.6 dB (peaks 0.33 and 0.99: still 1 to 3), and the table says
    so; nothing is turned down, nor said, when nothing would clip."""
    t = np.arange(2205) / SAMPLE_RATE
    quiet, loud = (level * np.sin(2 * np.pi * 440 * t) for level in (0.5, 1.5))
    assert playback_gain([quiet, loud, None]) == pytest.approx(0.99 / 1.5, rel=1e-3)
    html = players_table({"x": {"target": quiet, "resynthesis": loud}}, ["target", "resynthesis"])
    assert "turned down together by 3.6 dB" in html
    np.testing.assert_allclose(played_peaks(html), [0.33, 0.99], atol=2e-3)
    alone = players_table({"x": {"target": quiet}}, ["target"])
    assert "turned down" not in alone
    np.testing.assert_allclose(played_peaks(alone), [0.5], atol=2e-3)


def fake_project(root, stem="01_C4"):
    """A project folder as the two notebooks leave it: the marker file, the tone, each run's
    resynthesis wav (the optimized one 6 dB louder and peaking above full scale) and both
    run records, all paths stored relative to root."""
    (root / "scale_tones").mkdir(parents=True)
    (root / "ddsp_helpers.py").write_text("")
    tone = 0.4 * np.sin(2 * np.pi * 261.6 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    write_wav(root / "scale_tones" / f"{stem}.wav", tone)
    model = DDSPModel(hidden_size=16)
    history = {"loss": [2.0, 1.0], "terms": {"spectral": [2.0, 1.0]}, "timed_epochs": [1, 2],
               "elapsed_seconds": [1.0, 2.0], "skipped_steps": 0, "status": "finished"}
    metric = {"spectral_distance": 1.0, "f0_error_cents": 1.0, "voiced_frames_matched": 1.0,
              "loudness_l1_db": 1.0}
    for name, level in (("ddsp_original", 1.0), ("ddsp_optimized", 2.0)):
        wav = write_wav(root / "outputs" / name / f"resynth_{stem}.wav", level * 0.6 * tone / 0.4)
        batch = {"file_paths": [str(root / "scale_tones" / f"{stem}.wav")], "errors": {},
                 "sources": []}
        record = make_run_record(name, model, batch, history, {}, {stem: {"model": metric,
                                 "sine": metric}}, [wav], 0.0, root=root, device="cpu")
        save_run_record(root / "outputs" / "runs" / f"{name}.json", record)
    return root


def shown(monkeypatch, runs_dir):
    """(records, what show_comparison displayed as text) without a notebook."""
    import IPython.display

    out = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj: out.append(getattr(obj, "data", str(obj))))
    records = show_comparison(runs_dir)
    return records, "\n".join(map(str, out))


def test_the_comparison_plays_at_true_level_after_the_folder_moved(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "project")
    records, text = shown(monkeypatch, root / "outputs" / "runs")
    assert records is not None and "<audio" in text and "did not learn" not in text
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    root.rename(moved)
    records, text = shown(monkeypatch, moved / "outputs" / "runs")
    assert records["original"]["files"] == ["scale_tones/01_C4.wav"]
    assert text.count("<audio") == 3 and "gone" not in text
    # the optimized resynthesis peaks at 1.2: the three players are turned down by 1.7 dB together
    assert "turned down together by 1.7 dB" in text
    assert read_wav(moved / "outputs" / "ddsp_optimized" / "resynth_01_C4.wav").max() == \
        pytest.approx(1.2, abs=1e-3)  # the wav keeps its level


def test_the_comparison_says_which_file_is_gone(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "project")
    (root / "outputs" / "ddsp_original" / "resynth_01_C4.wav").unlink()
    _, text = shown(monkeypatch, root / "outputs" / "runs")
    assert r"Both runs learned 01\_C4, but these files are gone" in text and "original" in text
    assert text.count("<audio") == 2  # the lost file loses its player only: target, optimized


def test_the_comparison_waits_for_the_other_notebook(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "project")
    (root / "outputs" / "runs" / "ddsp_optimized.json").unlink()
    records, text = shown(monkeypatch, root / "outputs" / "runs")
    assert records is None and "notebooks/ddsp_optimized.ipynb" in text
# Issue 13, class 6: names of every valid length land; one bad upload does not stop the rest.
@pytest.mark.parametrize("n_bytes", [241, 242, 250, 255])
def test_valid_long_upload_names_land_unchanged(tmp_path, n_bytes):
    """A name of 242..255 bytes failed: the temporary name added 14 characters."""
    name = "t" * (n_bytes - len(".wav")) + ".wav"
    written = save_uploads({name: b"data"}, tmp_path)
    assert [p.name for p in written] == [name] and written[0].read_bytes() == b"data"
    again = save_uploads({name: b"more"}, tmp_path)[0]  # kept apart, still a valid name
    assert again.name.endswith("_2.wav") and len(again.name.encode()) <= 255
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, again.name])


def test_atomic_write_takes_a_name_of_the_longest_valid_length(tmp_path):
    from grown_timbres.files import atomic_write
    name = "\u00e9" * 125 + ".wav"  # 254 bytes: the temporary name is cut by bytes, not letters
    path = atomic_write(tmp_path / name, lambda tmp: open(tmp, "wb").write(b"x"))
    assert path.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [name]


def test_overlong_upload_names_are_shortened_keeping_the_suffix():
    name = safe_upload_name("n" * 300 + ".flac")
    assert len(name.encode()) == 255 and name.endswith("n.flac")
    odd = safe_upload_name("a." + "b" * 300)  # no real suffix to keep
    assert len(odd.encode()) == 255 and odd.startswith("a.b")


def test_one_unusable_upload_is_reported_and_the_others_are_saved(tmp_path):
    uploads = [{"name": "first.wav", "content": b"1"}, {"name": "../..", "content": b"2"},
               {"name": "text.wav", "content": "not bytes"}, {"name": None, "content": b"3"},
               {"name": "last.wav", "content": memoryview(b"4")}]
    with pytest.warns(UserWarning) as caught:
        written = save_uploads(uploads, tmp_path)
    assert [p.name for p in written] == ["first.wav", "last.wav"]
    assert [p.read_bytes() for p in written] == [b"1", b"4"]
    messages = [str(w.message) for w in caught]
    assert messages == ["upload '../..' skipped: '../..' is not a usable file name",
                        "upload 'text.wav' skipped: its content is str, not bytes",
                        "upload None skipped: None is not a usable file name (not text)"]


def test_a_failed_write_is_reported_and_the_others_are_saved(tmp_path, monkeypatch):
    import grown_timbres.notebook as notebook
    original = notebook.atomic_write

    def full_disk_for_bad(target, write):
        if target.name == "bad.wav":
            raise OSError(28, "No space left on device")
        return original(target, write)

    monkeypatch.setattr(notebook, "atomic_write", full_disk_for_bad)
    with pytest.warns(UserWarning, match="'bad.wav' skipped: .*No space left on device"):
        written = save_uploads({"bad.wav": b"1", "good.wav": b"2"}, tmp_path)
    assert [p.name for p in written] == ["good.wav"]


def test_temporary_names_fit_and_start_with_the_name_when_it_leaves_room():
    from grown_timbres.files import temp_prefix
    assert temp_prefix("/a/x.wav") == ".x.wav."
    long = "\u00e9" * 127  # 254 bytes
    assert len(temp_prefix(long).encode()) + 8 + len(".tmp") <= 255
    assert long.startswith(temp_prefix(long)[1:-1])


# ------------------------------------------------------------------ recording in Colab
@pytest.fixture
def colab(monkeypatch):
    """A stand-in for Colab: `google.colab.output.eval_js` answers with the fixture's bytes as
    the browser would (base64 of a WebM/Opus recording); `colab.calls` lists what it was asked."""
    output = types.SimpleNamespace(calls=[])

    def eval_js(expression):
        output.calls.append(expression)
        return base64.b64encode(RECORDING_FIXTURE.read_bytes()).decode("ascii")

    output.eval_js = eval_js
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(output=output))
    return output


def test_a_recording_in_colab_is_saved_like_an_upload_and_reads_like_one(colab, ffmpeg, tmp_path,
                                                                         monkeypatch):
    folder = tmp_path / "uploads"
    first = record_microphone(1.5, folder)  # the fixture's length
    assert colab.calls == ["recordMicrophone(1500)"]
    assert first.parent == folder and re.fullmatch(r"recording_\d{8}-\d{6}\.wav", first.name)
    audio = load_audio(first)
    assert abs(len(audio) - 1.5 * SAMPLE_RATE) <= 0.02 * SAMPLE_RATE
    monkeypatch.setattr(time, "strftime", lambda fmt: first.name)  # a second take, same second
    second = record_microphone(1.5, folder)
    assert second.name == first.name.replace(".wav", "_2.wav")
    assert sorted(p.name for p in folder.iterdir()) == sorted([first.name, second.name])


@pytest.mark.parametrize("seconds", [0, 0.5, 61, float("nan"), float("inf"), np.float32("nan"),
                                     -np.inf, np.int64(61), "10", None, True, np.bool_(True)])
def test_recording_seconds_outside_the_limits_are_refused_before_the_browser_is_asked(
        colab, tmp_path, seconds):
    """Issue 21, class 8: a bool is no length (True used to record 1 s); text, None and the
    like name their type."""
    with pytest.raises(ValueError) as info:
        record_microphone(seconds, tmp_path / "uploads")
    assert str(info.value).startswith(f"cannot record {seconds!r} s: ")
    assert str(info.value).endswith("from MIN_RECORD_SECONDS=1 to MAX_RECORD_SECONDS=60 s")
    if isinstance(seconds, (str, type(None), bool, np.bool_)):
        assert f"the length is a number of seconds, not {type(seconds).__name__}, " in str(
            info.value)
    assert colab.calls == [] and not (tmp_path / "uploads").exists()


@pytest.mark.parametrize("seconds", [np.float32(1.5), np.float64(1.5), 1.5])
def test_recording_seconds_may_be_any_real_number_type(colab, ffmpeg, tmp_path, seconds):
    """Issue 21, class 8: a numpy number (a slider's value, a computed length) used to be
    refused as "outside 1 to 60"."""
    assert record_microphone(seconds, tmp_path / "uploads").is_file()
    assert colab.calls == ["recordMicrophone(1500)"]


def test_a_recording_shorter_than_asked_is_refused_and_nothing_saved(colab, ffmpeg, tmp_path):
    """Issue 21, class 8: the browser asked for 2 s (a numpy int, accepted) answers with the
    fixture's 1.5 s: its end was lost on the way, and no part of it is kept."""
    with pytest.raises(AudioInputError, match=r"^recording_\d{8}-\d{6}\.wav: is cut short: "
                                              r"1\.50 s of audio, but it was recorded for 2\.00 s"):
        record_microphone(np.int64(2), tmp_path / "uploads")
    assert colab.calls == ["recordMicrophone(2000)"] and not (tmp_path / "uploads").exists()


@pytest.mark.parametrize("reply, problem", [
    ("not base64!", r"Non-base64 digit found|Only base64 data is allowed"),
    ("QUJD\n", r"Non-base64 digit found|Only base64 data is allowed"),
    ("QUJDR", r"Incorrect padding|Invalid base64-encoded string"),
    ("\u00e9t\u00e9", r"string argument should contain only ASCII characters"),
    (None, None), ({"data": "QUJD"}, None)])
def test_a_reply_that_is_not_base64_is_refused_naming_the_recording(colab, tmp_path, reply,
                                                                     problem):
    """Issue 21, class 8: such a reply used to raise binascii.Error naming nothing."""
    colab.eval_js = lambda expression: reply
    with pytest.raises(AudioInputError) as info:
        record_microphone(5, tmp_path / "uploads")
    said = (rf"not a base64 recording \(({problem}).*; it begins {re.escape(repr(reply[:40]))}\)"
            if problem else f"a {type(reply).__name__}, not base64 text")
    assert re.fullmatch(rf"recording_\d{{8}}-\d{{6}}\.wav: the browser's reply is {said}; run "
                        "the cell again", str(info.value)), str(info.value)
    assert not (tmp_path / "uploads").exists()


def test_an_empty_reply_or_a_damaged_recording_saves_nothing(colab, ffmpeg, tmp_path):
    """An empty reply is a browser that recorded nothing; half a recording is refused (the
    reasons: test_audio), not kept in part."""
    colab.eval_js = lambda expression: ""
    with pytest.raises(RuntimeError, match=r"^the browser recorded nothing \(an empty reply\)"):
        record_microphone(5, tmp_path / "uploads")
    half = RECORDING_FIXTURE.read_bytes()[:4000]
    colab.eval_js = lambda expression: base64.b64encode(half).decode("ascii")
    with pytest.raises(AudioInputError, match=r"\.wav: is damaged or cut short: "):
        record_microphone(1.5, tmp_path / "uploads")
    assert not (tmp_path / "uploads").exists()


def test_a_refused_microphone_says_what_to_do_and_saves_nothing(colab, tmp_path):
    def refused(expression):
        raise Exception("NotAllowedError: Permission denied")  # Colab's MessageError is one
    colab.eval_js = refused
    with pytest.raises(RuntimeError, match="Permission denied.*allow this page to use the "
                                           "microphone"):
        record_microphone(5, tmp_path / "uploads")
    assert not (tmp_path / "uploads").exists()


def test_outside_colab_recording_does_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert record_microphone(5, tmp_path / "uploads") is None
    assert not (tmp_path / "uploads").exists() and capsys.readouterr() == ("", "")


def test_the_sources_table_says_what_training_takes_from_each_file(bundled_features):
    """A 60 s take (the first tone held, then 20 s of silence, then the tone again) and a 2 s
    tone: the table lists each file's length, its training examples, the seconds they use,
    the dropped windows and where its excerpt starts, a row for the rejected file with the
    reason, and the totals in minutes."""
    from grown_timbres.batching import collate
    from grown_timbres.config import FRAME_RATE, HOP_LENGTH, LOUDNESS_FLOOR_DB

    tone = bundled_features[0]
    n = int(20 * FRAME_RATE)
    held = {"f0": np.full(n, tone["f0"][40]), "voiced": np.ones(n, bool),
            "loudness": np.full(n, -20.0, np.float32), "mfcc": np.repeat(tone["mfcc"][40:41], n, 0),
            "audio": np.zeros(n * HOP_LENGTH, np.float32)}
    quiet = {**held, "voiced": np.zeros(n, bool),
             "loudness": np.full(n, LOUDNESS_FLOOR_DB, np.float32)}
    take = {key: np.concatenate([held[key], quiet[key], held[key]]) for key in held}
    batch = collate([{"path": "/x/take.wav", **take}, tone], {"/x/bad.wav": "is silent"})
    from grown_timbres.report import sources_table

    table = sources_table(batch)
    take_row = next(line for line in table.splitlines() if line.startswith(r"| take\.wav"))
    source = batch["sources"][0]
    assert source["seconds"] == pytest.approx(60.0, abs=0.05) and source["silent"] > 10
    assert take_row == (f"| take\\.wav | accepted | 60.0 s | {source['examples']} | "
                        f"{source['seconds_used']:.1f} s | {source['silent']}, {source['unpitched']} | "
                        "0.0 s |")
    assert r"| bad\.wav | **rejected** | is silent |" in table  # names Markdown-escaped
    used = (source["seconds_used"] + 2.0) / 60
    assert table.splitlines()[-1] == (f"{source['examples'] + 1} training examples of at most "
                                      f"4 s from 2 files: {used:.2f} minutes of audio used.")
