"""grown_timbres/comparison.py: the files a run record names are found under the project folder
only (after a move too); `../`, absolute paths and links that leave the project are refused with
a message naming the record and the path, and a refused or unplayable file loses its player,
never the table. Each run plays its own copy of what it learned, so files trained on from
elsewhere still compare; a long wav is played up to the excerpt's length."""
import json
import os

import numpy as np
import pytest

from grown_timbres.audio import write_wav
from grown_timbres.config import SAMPLE_RATE
from grown_timbres.comparison import recorded_audio, recorded_path, resynthesis_wav, target_wav
from grown_timbres.runs import RunRecordError, project_path
from test_notebook import fake_project, shown

STEM = "01_C4"


def test_record_paths_are_relative_to_the_project_and_found_after_a_move(tmp_path):
    old_root = tmp_path / "project"
    wav = old_root / "outputs" / "ddsp_optimized" / "resynth_01_C4.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF")
    stored = project_path(wav, old_root)
    assert stored == "outputs/ddsp_optimized/resynth_01_C4.wav"
    assert project_path("/elsewhere/x.wav", old_root) == "/elsewhere/x.wav"
    new_root = tmp_path / "moved" / "project"
    new_root.parent.mkdir()
    old_root.rename(new_root)
    assert recorded_path(stored, new_root) == new_root / stored
    # an absolute path written before the move (an older record) is found by its name and folder
    assert recorded_path(str(wav), new_root) == new_root / stored
    # the other run's file of the same name is not taken for this one
    assert recorded_path("outputs/ddsp_original/resynth_01_C4.wav", new_root) is None
    assert recorded_path("outputs/x/gone.wav", new_root) is None


@pytest.fixture
def project(tmp_path):
    """(project root, a wav outside it)."""
    root = tmp_path / "project"
    (root / "outputs" / "ddsp_original").mkdir(parents=True)
    outside = tmp_path / "private" / "secret.wav"
    outside.parent.mkdir()
    write_wav(outside, np.zeros(100, np.float32))
    return root, outside


@pytest.mark.parametrize("named", ["../private/secret.wav", "outputs/../../private/secret.wav",
                                   "ABSOLUTE"])
def test_a_path_leading_outside_the_project_is_refused(project, named):
    root, outside = project
    named = str(outside) if named == "ABSOLUTE" else named
    with pytest.raises(RunRecordError) as caught:
        recorded_path(named, root, "runs/shared.json")
    message = str(caught.value)
    assert message.startswith("runs/shared.json: the path ") and repr(named) in message
    assert "outside the project folder" in message and "refused" in message


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_link_in_outputs_that_leaves_the_project_is_refused(project, link):
    """outputs/ddsp_original/resynth_01_C4.wav is a symbolic link to a file outside, or the
    run's folder a link to a folder outside: refused, as is the record that names it."""
    root, outside = project
    if link == "file":
        os.symlink(outside, root / "outputs" / "ddsp_original" / "resynth_01_C4.wav")
    else:
        (root / "outputs" / "ddsp_original").rmdir()
        os.symlink(outside.parent, root / "outputs" / "ddsp_original")
        (outside.parent / "resynth_01_C4.wav").write_bytes(outside.read_bytes())
    record = {"wavs": ["outputs/ddsp_original/resynth_01_C4.wav"], "files": []}
    with pytest.raises(RunRecordError, match="ddsp_original.json: the path 'outputs/ddsp_origin"
                                             "al/resynth_01_C4.wav' leads to .*private"):
        resynthesis_wav(record, STEM, root, "ddsp_original.json")


def test_links_inside_the_project_and_names_with_glob_characters_are_followed_plainly(project):
    root, _ = project
    real = write_wav(root / "outputs" / "ddsp_original" / "resynth_01_C4.wav", np.zeros(100))
    os.symlink(real, root / "outputs" / "ddsp_original" / "resynth_02_D4.wav")
    assert recorded_path("outputs/ddsp_original/resynth_02_D4.wav", root) == real.resolve()
    # a name that no longer exists is looked for by its name, never as a pattern
    for name in ["*.wav", "resynth_0[12]_C4.wav", "**", "..", ""]:
        assert recorded_path(f"/gone/ddsp_original/{name}", root) is None, name


def run_wavs(root, name, stem=STEM, level=0.5):
    """A run's resynthesis and its copy of the target, in its own folder: [paths]."""
    tone = level * np.sin(2 * np.pi * 261.6 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    folder = root / "outputs" / name
    return [write_wav(folder / f"resynth_{stem}.wav", tone), write_wav(folder /
            f"target_{stem}.wav", tone)]


def edit_record(root, name, **fields):
    path = root / "outputs" / "runs" / f"{name}.json"
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


def test_a_run_on_files_from_elsewhere_plays_its_own_copy_of_the_target(tmp_path, monkeypatch):
    """Both runs learned /data/01_C4.wav (outside the project, since deleted): each kept the
    excerpt it learned beside its resynthesis, and all three players play."""
    root = fake_project(tmp_path / "project")
    for name in ("ddsp_original", "ddsp_optimized"):
        wavs = run_wavs(root, name)
        edit_record(root, name, files=[f"/data/{STEM}.wav"],
                    wavs=[project_path(w, root) for w in wavs])
    (root / "scale_tones" / f"{STEM}.wav").unlink()
    assert target_wav({"wavs": [], "files": [f"/data/{STEM}.wav"]}, STEM, root) is None
    records, text = shown(monkeypatch, root / "outputs" / "runs")
    assert records is not None and text.count("<audio") == 3
    assert "Not played" not in text and "gone" not in text


def test_a_refused_file_loses_its_player_and_the_table_stays(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "project")
    outside = write_wav(tmp_path / "secret" / f"resynth_{STEM}.wav",
                        np.full(SAMPLE_RATE, 0.1, np.float32))
    edit_record(root, "ddsp_original", wavs=[str(outside)])
    wav = root / "outputs" / "ddsp_optimized" / f"resynth_{STEM}.wav"
    wav.unlink()
    os.symlink(outside, wav)
    records, text = shown(monkeypatch, root / "outputs" / "runs")
    assert records is not None and "| run |" in text  # the comparison table
    refusals = [line for line in text.splitlines() if line.startswith("Not played")]
    assert len(refusals) == 2
    assert "ddsp\\_original\\.json" in refusals[0] and "secret\\/resynth" in refusals[0]
    assert "ddsp\\_optimized\\.json" in refusals[1]
    assert text.count("<audio") == 1  # the target only


def test_a_file_that_is_no_audio_loses_its_player_only(tmp_path, monkeypatch):
    root = fake_project(tmp_path / "project")
    (root / "outputs" / "ddsp_original" / f"resynth_{STEM}.wav").write_text("not a wav")
    records, text = shown(monkeypatch, root / "outputs" / "runs")
    assert records is not None and text.count("<audio") == 2
    assert "cannot be played" in text and "ddsp\\_original\\.json" in text


def test_a_long_wav_is_played_up_to_the_excerpt_length(tmp_path):
    wav = write_wav(tmp_path / "long.wav", np.full(40 * SAMPLE_RATE, 0.2, np.float32))
    audio = recorded_audio(wav)
    assert len(audio) == 30 * SAMPLE_RATE and audio.dtype == np.float32
    np.testing.assert_allclose(audio[:10], 0.2, rtol=1e-6)  # its true level


# Issue 21, class 6: a hand-edited record names its file and field, and is skipped.


def test_a_name_listed_in_many_folders_is_searched_for_once(project, monkeypatch):
    """A record listing resynth_01_C4.wav in 5000 folders that are gone costs one search of the
    project, not 5000 (a shared record must not hang the comparison)."""
    import pathlib

    root, _ = project
    wav = write_wav(root / "outputs" / "ddsp_original" / "resynth_01_C4.wav", np.zeros(100))
    searches = []
    rglob = pathlib.Path.rglob
    monkeypatch.setattr(pathlib.Path, "rglob",
                        lambda self, pattern: searches.append(pattern) or rglob(self, pattern))
    gone = [f"/gone/run{i}/resynth_01_C4.wav" for i in range(5000)]
    record = {"wavs": gone + ["/old/place/ddsp_original/resynth_01_C4.wav"], "files": []}
    assert resynthesis_wav(record, STEM, root) == wav.resolve()
    assert searches == ["resynth_01_C4.wav"]
