"""Feature cache entries: the digest that names a file's entry, writing an entry, and reading
one without trusting it. A cache outlives crashes and travels between machines, and anything
can sit where an entry should be: a FIFO, another file's entry, a zip bomb.

An entry is a zip of manifest.json (the digest of the feature settings and the audio file's
bytes, which also names the entry; the settings; the number of frames; each member's size in
bytes) and one .npy member per feature. The manifest is checked against the audio file's
digest, and every member's size against the manifest and against what that many frames hold,
before any member is inflated: a small entry cannot inflate to gigabytes.

    audio file -> digest (64 hex) -> <cache_dir>/<digest[:32]>.npz
    entry -> {audio [N], f0 [T], voiced [T], loudness [T], mfcc [T, N_MFCC]}   (N = T * hop_length)
"""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from .audio import MIN_AUDIO_SAMPLES
from .files import file_kind
from .config import MAX_AUDIO_SECONDS, N_MFCC, SAMPLE_RATE

FEATURE_KEYS = ("audio", "f0", "voiced", "loudness", "mfcc")
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 16  # a manifest is about 1 KiB
READ_BLOCK_BYTES = 1 << 20


class OldFormatEntry(ValueError):
    """An entry written by an earlier version (a plain .npz, no manifest): recomputed."""


def open_regular(path, what: str = "file"):
    """`path` opened for reading in binary, if it is a regular file; raises ValueError naming
    what it is otherwise. Checked before it is opened, opened without waiting, checked again:
    opening a FIFO to read would wait for a writer, and reading /dev/zero never ends."""
    mode = os.stat(path).st_mode  # a device is not even opened (a tape would rewind)
    if stat.S_ISREG(mode):  # and again once open: the path may have changed in between
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: {what} is {file_kind(mode)}, not a regular file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return open(fd, "rb")


def file_digest(path, settings_json: str) -> str | None:
    """sha256 of the settings and the file's bytes (64 hex digits), read up to the size the file
    had when opened; None for anything but a readable regular file (load_audio says why)."""
    import hashlib

    digest = hashlib.sha256(settings_json.encode())
    try:
        with open_regular(path) as file:
            left = os.fstat(file.fileno()).st_size
            while left > 0:
                block = file.read(min(READ_BLOCK_BYTES, left))
                if not block:
                    break
                digest.update(block)
                left -= len(block)
    except (OSError, ValueError):
        return None
    return digest.hexdigest()


def entry_path(cache_dir, digest: str) -> Path:
    return Path(cache_dir) / f"{digest[:32]}.npz"


def frame_limits(hop_length: int) -> tuple[int, int]:
    """(fewest, most) frames of `hop_length` samples that an accepted audio file has."""
    return (-(-MIN_AUDIO_SAMPLES // hop_length),
            int(MAX_AUDIO_SECONDS * SAMPLE_RATE) // hop_length)


def member_layouts(n_frames: int, hop_length: int) -> dict:
    """{key: (dtype, shape, bytes of its .npy member)} of an entry of n_frames frames."""
    shapes = {"audio": (n_frames * hop_length,), "f0": (n_frames,), "voiced": (n_frames,),
              "loudness": (n_frames,), "mfcc": (n_frames, N_MFCC)}
    layouts = {}
    for key, shape in shapes.items():
        dtype = np.dtype(bool if key == "voiced" else np.float32)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": shape})
        layouts[key] = (dtype, shape, len(header.getvalue()) + dtype.itemsize * int(np.prod(shape)))
    return layouts


def max_entry_bytes(hop_length: int) -> int:
    """The largest entry a file of MAX_AUDIO_SECONDS can make, with room for the zip's own."""
    most = frame_limits(hop_length)[1]
    members = sum(size for _, _, size in member_layouts(most, hop_length).values())
    return members + MAX_MANIFEST_BYTES + (1 << 16)


def write_entry(tmp, digest: str, settings_json: str, arrays: dict) -> None:
    """Write arrays (FEATURE_KEYS) as an entry at `tmp` (atomic_write's temporary file)."""
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        sizes = {}
        for key in FEATURE_KEYS:
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]),
                                          allow_pickle=False)
            sizes[key] = archive.getinfo(f"{key}.npy").file_size
        archive.writestr(MANIFEST, json.dumps({
            "digest": digest, "settings": settings_json,
            "n_frames": len(arrays["f0"]), "sizes": sizes}, sort_keys=True))


def read_manifest(archive: zipfile.ZipFile, digest: str, settings_json: str,
                  hop_length: int) -> dict:
    """The entry's manifest, checked: the right settings and audio file, a plausible length."""
    names = set(archive.namelist())
    if MANIFEST not in names:
        if "settings.npy" in names:
            raise OldFormatEntry("is from an earlier version (no manifest)")
        raise ValueError(f"lacks {MANIFEST}")
    size = archive.getinfo(MANIFEST).file_size
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{MANIFEST} would inflate to {size} bytes (at most "
                         f"{MAX_MANIFEST_BYTES})")
    manifest = json.loads(archive.read(MANIFEST))
    fields = {"digest": str, "settings": str, "n_frames": int, "sizes": dict}
    if not isinstance(manifest, dict) or any(type(manifest.get(k)) is not t
                                             for k, t in fields.items()):
        raise ValueError(f"{MANIFEST} lacks one of {', '.join(fields)}, or has the wrong type")
    if manifest["settings"] != settings_json:
        raise ValueError("was made with other feature settings")
    if manifest["digest"] != digest:
        raise ValueError(f"was made from another audio file (its manifest names the digest "
                         f"{manifest['digest'][:32]}, this file's is {digest[:32]})")
    fewest, most = frame_limits(hop_length)
    if not fewest <= manifest["n_frames"] <= most:
        raise ValueError(f"claims {manifest['n_frames']} frames; a file has {fewest} to {most}")
    missing = sorted({f"{key}.npy" for key in FEATURE_KEYS} - names)
    if missing:  # with at most as many members as expected (check_directory_end), no others
        raise ValueError(f"lacks {', '.join(missing)}")
    return manifest


def check_directory_end(file, size: int) -> None:
    """An entry ends with a plain end-of-directory record listing at most one member per
    feature and the manifest (no archive comment): zipfile would read every member the
    directory lists before anything can be checked, and a small file can list millions."""
    end = 22  # the record's length without a comment
    file.seek(max(size - end, 0))
    record = file.read(end)
    if len(record) < end or record[:4] != b"PK\x05\x06" or record[-2:] != b"\0\0":
        raise ValueError("is no cache entry: it does not end with a zip directory")
    n_members = int.from_bytes(record[10:12], "little")
    if n_members > len(FEATURE_KEYS) + 1:
        raise ValueError(f"lists {n_members} members; an entry has {len(FEATURE_KEYS) + 1}")
    file.seek(0)


def read_entry(cached, digest: str, settings_json: str, hop_length: int) -> dict:
    """The arrays of the entry at `cached` (FEATURE_KEYS, their dtypes and shapes checked),
    after its manifest (read_manifest) and every member's size are checked. Raises
    FileNotFoundError when there is none, OldFormatEntry for an earlier version's entry, and
    ValueError (or zipfile's, json's or numpy's own errors) saying what else is wrong."""
    with open_regular(cached, "cache entry") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_entry_bytes(hop_length):
            raise ValueError(f"is {size} bytes; the largest entry is "
                             f"{max_entry_bytes(hop_length)}")
        check_directory_end(file, size)
        with zipfile.ZipFile(file) as archive:
            manifest = read_manifest(archive, digest, settings_json, hop_length)
            layouts = member_layouts(manifest["n_frames"], hop_length)
            for key, (_, _, expected) in layouts.items():
                declared = archive.getinfo(f"{key}.npy").file_size
                if not declared == manifest["sizes"].get(key) == expected:
                    raise ValueError(
                        f"{key}.npy would inflate to {declared} bytes (its manifest says "
                        f"{manifest['sizes'].get(key)}); {manifest['n_frames']} frames hold "
                        f"{expected}")
            arrays = {}
            for key, (dtype, shape, _) in layouts.items():
                with archive.open(f"{key}.npy") as member:
                    arrays[key] = read_member(member, key, dtype, shape)
    return arrays


def read_member(member, key: str, dtype, shape) -> np.ndarray:
    """One .npy member, its header checked before its array is allocated: a header may claim
    any shape, and numpy's own reader allocates that shape first."""
    version = np.lib.format.read_magic(member)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"{key}.npy is .npy version {version}, expected 1.0")
    stored_shape, fortran_order, stored_dtype = read_header(member)
    if stored_dtype != dtype or stored_shape != shape or fortran_order:
        order = " in Fortran order" if fortran_order else ""
        raise ValueError(f"{key} is {stored_dtype} {list(stored_shape)}{order}, expected "
                         f"{dtype} {list(shape)}")
    values = np.empty(shape, dtype)
    buffer, filled = memoryview(values.reshape(-1).view(np.uint8)), 0
    while filled < len(buffer):
        n_read = member.readinto(buffer[filled:])
        if not n_read:
            raise ValueError(f"{key}.npy ends after {filled} of {len(buffer)} bytes")
        filled += n_read
    return values
