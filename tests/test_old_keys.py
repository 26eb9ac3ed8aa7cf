"""grown_timbres/old_keys.py: a dataclass read by the keys of the dict it replaced, exactly
those keys, read-only, and a key the dict never had answered with the fields to read."""
from dataclasses import dataclass

import numpy as np
import pytest

from grown_timbres.old_keys import OldKeys


@dataclass(frozen=True, eq=False)
class Take(OldKeys):
    pitch: np.ndarray
    seconds: float
    rate: int
    OLD_KEYS = {"f0": "pitch", "seconds": "seconds"}  # `rate` is new: no old key


def test_old_keys_read_the_fields_and_are_exactly_the_old_dicts():
    take = Take(np.arange(3.0), 1.5, 100)
    assert take["f0"] is take.pitch and take["seconds"] == 1.5
    assert list(take) == ["f0", "seconds"] and len(take) == 2 and "rate" not in take
    assert {**take, "seconds": 2.0} == {"f0": take.pitch, "seconds": 2.0}
    assert take.get("harmonic_waves") is None


def test_a_key_the_dict_never_had_names_the_fields():
    take = Take(np.arange(3.0), 1.5, 100)
    for key in ("rate", "pitch_hz", ["f0"]):
        with pytest.raises(KeyError, match=r"Take has no key .*: read its fields "
                                           r"\(\.pitch, \.seconds, \.rate\)"):
            take[key]


def test_objects_compare_and_hash_as_objects():
    """Fields hold arrays, which compare element by element: a Mapping's == would fail."""
    take = Take(np.arange(3.0), 1.5, 100)
    assert take == take and take != Take(np.arange(3.0), 1.5, 100)
    assert len({take, take}) == 1
