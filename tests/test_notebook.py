"""grown_timbres/notebook.py: uploads land inside their folder under clean, distinct names."""
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
