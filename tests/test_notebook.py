"""grown_timbres/notebook.py: uploads land inside their folder under clean, distinct names of
any valid length; an upload that cannot be saved is reported and the others are saved."""
import pytest

from grown_timbres.notebook import safe_upload_name, save_uploads


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
    from grown_timbres.audio import atomic_write
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
    from grown_timbres.audio import temp_prefix
    assert temp_prefix("/a/x.wav") == ".x.wav."
    long = "\u00e9" * 127  # 254 bytes
    assert len(temp_prefix(long).encode()) + 8 + len(".tmp") <= 255
    assert long.startswith(temp_prefix(long)[1:-1])
