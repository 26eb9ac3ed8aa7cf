"""grown_timbres/growth.py: stages as data (Stage, one validation), their weights and gains,
grow_timbre's length, level, seams and harmonics per stage, and what sounds in each stage."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from grown_timbres.audio import EDGE_FADE_SECONDS
from grown_timbres.config import N_MFCC, SAMPLE_RATE
from grown_timbres.config import MIN_STAGE_SECONDS
from grown_timbres.growth import (CROSSFADE_SECONDS, GROWTH_STAGES, MAX_STAGE_SECONDS, Stage,
                                  grow_timbre, stage_controls, stage_gains, stage_weights,
                                  stages_from_table, stages_to_table, steady_note)
from grown_timbres.model import DDSPModel
from conftest import spectrum_db


SR = SAMPLE_RATE
F0 = 261.6


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return DDSPModel(hidden_size=64)


@pytest.fixture(scope="module")
def c4_mfcc(bundled_features):
    return bundled_features[0]["mfcc"].mean(0)


@pytest.fixture(scope="module")
def grown(small_model, c4_mfcc):
    return grow_timbre(small_model, F0, -25.0, c4_mfcc)


def harmonic_amplitude(audio, t, f, window_s=0.02):
    """Amplitude of the partial at f Hz around t s: Hann-windowed projection over window_s
    (a linear envelope reads its value at the window's centre)."""
    n = int(window_s * SR)
    start = int(round(t * SR)) - n // 2
    index = np.arange(start, start + n)
    w = np.hanning(n)
    segment = audio[start: start + n].astype(np.float64)
    return float(2 * abs(np.sum(w * segment * np.exp(-2j * np.pi * f * index / SR))) / w.sum())


def steady_harmonic_amplitudes(model, mfcc, loudness=-25.0, n_frames=100):
    """The model's harmonic amplitudes (amplitude x distribution) for the held note, from its
    last frame (the GRU has settled by then): [H]."""
    with torch.no_grad():
        f0, loud, m = steady_note(model, F0, loudness, mfcc, n_frames)
        controls = model.get_controls(f0, loud, m)
    return (controls["amplitude"] * controls["harmonic_distribution"])[0, -1].numpy()


def test_grow_timbre_length_dtype_peak(grown, small_model, c4_mfcc):
    """Length and dtype; a quiet note is left at the model's own level (the fundamental in
    the first stage has the model's harmonic-1 amplitude, within 0.1 dB); 10 ms fades at both
    ends; a note that would clip is scaled (not clipped) to a 0.99 peak."""
    expected = round(sum(s.duration for s in GROWTH_STAGES) * SR)
    assert grown.shape == (expected,) and grown.dtype == np.float32
    assert np.all(np.isfinite(grown))
    a1 = steady_harmonic_amplitudes(small_model, c4_mfcc)[0]
    measured = harmonic_amplitude(grown, 0.5, F0, window_s=0.1)
    print(f"fundamental: model amplitude {a1:.5f}, rendered {measured:.5f}")
    assert 20 * np.log10(measured / a1) == pytest.approx(0.0, abs=0.1)
    fade = int(EDGE_FADE_SECONDS * SR)
    assert EDGE_FADE_SECONDS == 0.01
    assert grown[0] == 0.0 and abs(grown[-1]) < 1e-3 * np.max(np.abs(grown))
    ramp = np.arange(fade) / fade  # |sample| <= ramp x the peak just after (+10%: GRU settling)
    after_start, before_end = np.abs(grown[fade: 3 * fade]), np.abs(grown[-3 * fade: -fade])
    assert np.all(np.abs(grown[:fade]) <= 1.1 * ramp * after_start.max())
    assert np.all(np.abs(grown[-fade:]) <= 1.1 * ramp[::-1] * before_end.max())

    loud = DDSPModel(hidden_size=64)
    loud.load_state_dict(small_model.state_dict())
    with torch.no_grad():
        loud.out_proj.bias[0] += 30.0  # amplitude head saturated: amplitude ~2, peaks above 1
    clipped_scale = grow_timbre(loud, F0, -25.0, c4_mfcc)
    assert np.max(np.abs(clipped_scale)) == pytest.approx(0.99, abs=1e-6)
    assert np.sum(np.abs(clipped_scale) > 0.99 - 1e-6) <= 3  # one peak, not a clipped plateau


def test_grow_timbre_with_zero_mfcc_and_reproducible(small_model):
    a = grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC))
    b = grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC))
    assert np.array_equal(a, b) and np.all(np.isfinite(a))
    assert small_model.training  # the render restores the mode it found


def boundary_jumps(audio, stages, window_s=0.010, guard_s=0.050):
    """For each boundary: (max |sample difference| within +/- window_s of it, max |difference|
    in the steady parts of the two stages around it, guard_s away from every edge)."""
    diff = np.abs(np.diff(audio.astype(np.float64)))
    edges = np.concatenate([[0.0], np.cumsum([s.duration for s in stages])])
    guard, window = int(guard_s * SR), int(window_s * SR)

    def steady(i):
        a, b = int(edges[i] * SR) + guard, int(edges[i + 1] * SR) - guard
        return diff[a:b].max()

    result = []
    for i, boundary in enumerate(edges[1:-1]):
        centre = int(round(boundary * SR))
        result.append((diff[centre - window: centre + window].max(), max(steady(i), steady(i + 1))))
    return result


def test_no_jump_at_stage_boundaries(grown):
    for boundary, (at_boundary, steady) in enumerate(boundary_jumps(grown, GROWTH_STAGES), 1):
        print(f"boundary {boundary}: max |diff| {at_boundary:.5f} near it, {steady:.5f} in the "
              f"stages around it (ratio {at_boundary / steady:.2f})")
        assert at_boundary <= 1.5 * steady, boundary
    # the criterion catches a click: a step as large as the local peak at the second boundary
    clicked = grown.copy()
    clicked[2 * SR:] += np.max(np.abs(grown[1 * SR: 3 * SR]))
    at_boundary, steady = boundary_jumps(clicked, GROWTH_STAGES)[1]
    assert at_boundary > 1.5 * steady


def test_new_harmonics_fade_in_linearly_over_the_crossfade(grown, small_model, c4_mfcc):
    """At each boundary where harmonics are added, the new ones rise linearly over
    CROSSFADE_SECONDS (80 ms) centred on the boundary: 1/4 of their level 20 ms before it, 1/2
    on it, 3/4 20 ms after, full from 40 ms after; the harmonics already sounding stay put."""
    assert CROSSFADE_SECONDS == 0.08
    levels = steady_harmonic_amplitudes(small_model, c4_mfcc)
    for boundary, new_harmonic, old_harmonic in [(1.0, 2, 1), (2.0, 4, 3), (3.0, 9, 8)]:
        full = harmonic_amplitude(grown, boundary + 0.2, new_harmonic * F0)
        assert full == pytest.approx(levels[new_harmonic - 1], rel=0.02)
        for offset, share in [(-0.1, 0.0), (-0.02, 0.25), (0.0, 0.5), (0.02, 0.75), (0.1, 1.0)]:
            measured = harmonic_amplitude(grown, boundary + offset, new_harmonic * F0)
            print(f"boundary {boundary} s {offset * 1000:+.0f} ms: harmonic {new_harmonic} at "
                  f"{measured / full:.3f} of full (expected {share})")
            assert measured == pytest.approx(share * full, abs=0.03 * full), (boundary, offset)
        kept = [harmonic_amplitude(grown, boundary + o, old_harmonic * F0) for o in (-0.1, 0, 0.1)]
        np.testing.assert_allclose(kept, levels[old_harmonic - 1], rtol=0.02)


def stage_windows(stages, margin_s=0.1):
    """(start, end) s of each stage's steady part: margin_s away from its boundaries."""
    edges = np.concatenate([[0.0], np.cumsum([s.duration for s in stages])])
    return [(a + margin_s, b - margin_s) for a, b in zip(edges[:-1], edges[1:])]


def test_each_stage_window_sounds_its_harmonics_and_only_those(grown):
    """In the middle of each stage: the harmonics the stage lets through (below Nyquist) are
    within 30 dB of the strongest, those beyond its count are more than 60 dB down; between
    the harmonics there is nothing (< -100 dB) until the noise stage, which raises the level
    between harmonics by more than 20 dB."""
    below_nyquist = int((SR / 2) // F0)
    floors = []
    for stage, (start, end) in zip(GROWTH_STAGES, stage_windows(GROWTH_STAGES)):
        segment = grown[int(start * SR): int(end * SR)]
        freqs, db = spectrum_db(segment, n_fft=4 * len(segment))
        levels = np.array([db[np.abs(freqs - k * F0) < 3].max()
                           for k in range(1, below_nyquist + 1)])
        count = below_nyquist if stage.n_harmonics is None else stage.n_harmonics
        between = np.array([db[np.abs(freqs - (k + 0.5) * F0) < 30].max()
                            for k in range(1, below_nyquist)])
        floors.append(float(np.median(between)))
        print(f"{stage.name}: harmonics 1..{count} >= {levels[:count].min():.0f} dB, beyond "
              f"<= {levels[count:].max() if count < below_nyquist else float('nan'):.0f} dB, "
              f"between harmonics {floors[-1]:.0f} dB")
        assert levels[:count].min() > -30, stage.name
        if count < below_nyquist:
            assert levels[count:].max() < -60, stage.name
        if not stage.noise:
            assert floors[-1] < -100, stage.name
    assert GROWTH_STAGES[-1].noise and not GROWTH_STAGES[-2].noise
    assert floors[-1] > floors[-2] + 20


@pytest.mark.parametrize("duration", [0.5, 1.0, 0.3337])
def test_one_stage_length(small_model, c4_mfcc, duration):
    """One stage alone lasts round(duration x SR) samples and holds one level from the end of
    the model's settling (0.15 s) to its 10 ms end fade: nothing crossfades inside it."""
    stage = replace(GROWTH_STAGES[-1], duration=duration)
    audio = grow_timbre(small_model, F0, -25.0, c4_mfcc, [stage])
    assert audio.shape == (round(duration * SR),) and audio.dtype == np.float32
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    period = SR / F0  # RMS over whole periods: no ripple from partial cycles
    window = int(round(8 * period))
    starts = range(int(0.15 * SR), len(audio) - int(0.012 * SR) - window, window // 2)
    rms_db = [20 * np.log10(np.sqrt(np.mean(audio[i: i + window].astype(np.float64) ** 2)))
              for i in starts]
    print(f"{duration} s stage: level {min(rms_db):.2f} .. {max(rms_db):.2f} dB")
    assert len(rms_db) >= 3 and max(rms_db) - min(rms_db) < 0.3


def harmonic_levels(audio, f0, n):
    """dB re. the strongest bin, of the strongest bin within 3 Hz of each of k * f0, k = 1..n."""
    middle = audio[int(0.2 * SR): int(0.8 * SR)]
    freqs, db = spectrum_db(middle, n_fft=8 * len(middle))
    return freqs, db, [db[np.abs(freqs - k * f0) < 3].max() for k in range(1, n + 1)]


def test_fundamental_stage_is_a_pure_tone(small_model, c4_mfcc):
    audio = grow_timbre(small_model, F0, -25.0, c4_mfcc, [GROWTH_STAGES[0]])
    assert audio.shape == (round(GROWTH_STAGES[0].duration * SR),)
    freqs, db, levels = harmonic_levels(audio, F0, 8)
    peak = freqs[np.argmax(db)]
    print(f"fundamental stage: peak {peak:.2f} Hz, harmonics 2..8 at "
          + ", ".join(f"{v:.0f}" for v in levels[1:]) + " dB")
    assert abs(peak - F0) < 1.0
    assert levels[1] < -40 and max(levels[1:]) < -40


def test_three_harmonic_stage_has_only_three(small_model, c4_mfcc):
    audio = grow_timbre(small_model, F0, -25.0, c4_mfcc, [GROWTH_STAGES[1]])
    _, _, levels = harmonic_levels(audio, F0, 10)
    assert max(levels[:3]) == 0.0 and max(levels[3:]) < -40, levels


def test_stage_with_zero_harmonics_is_silent_without_noise(small_model, c4_mfcc):
    stage = {"name": "nothing", "n_harmonics": 0, "noise": False, "duration": 0.5}
    audio = grow_timbre(small_model, F0, -25.0, c4_mfcc, [stage])
    assert np.max(np.abs(audio)) < 1e-6


def test_stage_weights_at_known_times():
    """Default stages (1, 1, 1, 1, 1.5 s) on a 1 ms grid: in the middle of its window a stage
    has all the weight; on a boundary the two neighbours have half each; 20 ms either side,
    3/4 and 1/4; from 40 ms (half the 80 ms crossfade) away, all to one side; in between the
    incoming weight is linear in time. Weights sum to 1 everywhere."""
    step = 1e-3
    weights = stage_weights(GROWTH_STAGES, 5500, step)
    assert weights.shape == (5, 5500)
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-12)
    assert np.all(weights >= 0)

    def at(t):
        return weights[:, int(round(t / step))]

    for i, middle in enumerate([0.5, 1.5, 2.5, 3.5, 4.75]):
        np.testing.assert_allclose(at(middle), np.eye(5)[i], atol=1e-9)
    for i, boundary in enumerate([1.0, 2.0, 3.0, 4.0]):
        for offset, incoming in [(-0.06, 0.0), (-0.04, 0.0), (-0.02, 0.25), (0.0, 0.5),
                                 (0.01, 0.625), (0.02, 0.75), (0.04, 1.0), (0.06, 1.0)]:
            expected = np.zeros(5)
            expected[i], expected[i + 1] = 1 - incoming, incoming
            np.testing.assert_allclose(at(boundary + offset), expected, atol=1e-6,
                                       err_msg=f"boundary {boundary} s {offset:+.2f} s")
        times = np.arange(5500) * step
        ramp = np.abs(times - boundary) < 0.04
        np.testing.assert_allclose(weights[i + 1, ramp], (times[ramp] - boundary) / 0.08 + 0.5,
                                   atol=1e-6)


def test_stage_weights_follow_custom_durations_and_crossfade():
    stages = [Stage("a", 1, False, 0.5), Stage("b", 2, False, 0.25), Stage("c", 3, True, 0.25)]
    weights = stage_weights(stages, 1000, 1e-3, crossfade_seconds=0.2)
    np.testing.assert_allclose(weights[:, 300], [1, 0, 0], atol=1e-9)  # 200 ms before 0.5 s
    np.testing.assert_allclose(weights[:, 450], [0.75, 0.25, 0], atol=1e-6)
    np.testing.assert_allclose(weights[:, 500], [0.5, 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(weights[:, 750], [0, 0.5, 0.5], atol=1e-6)  # 0.5 + 0.25 s
    np.testing.assert_allclose(weights[:, 999], [0, 0, 1], atol=1e-9)


def test_stage_gains_mix_the_neighbouring_stages_masks():
    """On the fundamental -> 3 harmonics boundary, harmonic 1 is at 1 and harmonics 2-3 at
    1/2; on the last boundary all harmonics are at 1 and the noise at 1/2."""
    step = 1e-3
    gains = stage_gains(GROWTH_STAGES, 5500, 8, step)
    harmonic, noise = gains["harmonic_gain"], gains["noise_gain"]
    assert harmonic.shape == (1, 5500, 8) and noise.shape == (1, 5500, 1)
    np.testing.assert_allclose(harmonic[0, 1000].numpy(), [1, 0.5, 0.5, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(harmonic[0, 2500].numpy(), [1, 1, 1, 1, 1, 1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(harmonic[0, 1500].numpy(), [1, 1, 1, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(harmonic[0, 4000].numpy(), np.ones(8), atol=1e-6)
    assert noise[0, 3900, 0] == 0 and noise[0, 4000, 0] == pytest.approx(0.5, abs=1e-6)
    assert noise[0, 4500, 0] == 1


@pytest.mark.parametrize("bad_stage, message", [
    ({"name": "silent", "n_harmonics": 1, "noise": False, "duration": 0}, "duration"),
    ({"name": "backwards", "n_harmonics": 1, "noise": False, "duration": -1.0}, "duration"),
    ({"name": "nan", "n_harmonics": 1, "noise": False, "duration": float("nan")}, "duration"),
    ({"name": "no length", "n_harmonics": 1, "noise": False}, "duration"),
    ({"name": "vague", "duration": 1.0}, "n_harmonics"),
    ({"name": "half", "n_harmonics": 2.5, "noise": False, "duration": 1.0}, "n_harmonics"),
    ({"name": "negative", "n_harmonics": -1, "noise": False, "duration": 1.0}, "n_harmonics"),
])
def test_bad_stages_are_refused_naming_the_stage(bad_stage, message, small_model):
    stages = [GROWTH_STAGES[0], bad_stage]
    with pytest.raises(ValueError, match=message) as info:
        stages_from_table(stages)
    assert repr(bad_stage["name"]) in str(info.value)
    with pytest.raises(ValueError):
        grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC), stages)


def test_default_stages_pass_and_an_empty_list_is_refused():
    assert stages_from_table(GROWTH_STAGES) == list(GROWTH_STAGES)
    with pytest.raises(ValueError, match="at least one stage"):
        stages_from_table([])


def test_stage_takes_form_values_and_compares_as_a_value():
    assert Stage("x", "all", "on", "1.5") == Stage("x", None, True, 1.5)
    assert Stage("x", "3", "off", 1) == Stage("x", 3, False, 1.0)
    assert stages_from_table([("x", "all", "on", "1.5")]) == [Stage("x", None, True, 1.5)]
    assert stages_from_table([{"n_harmonics": 2, "noise": 1, "duration": 1}])[0].name == "stage 1"


def test_one_duration_bound_for_every_stage(small_model):
    """Changed on purpose (issue 10): stages given in code were checked apart from form rows,
    and the two disagreed (any finite duration, against at most 30 s). A stage now has one
    bound, MAX_STAGE_SECONDS, however it is given: a 31 s stage dict that grow_timbre accepted
    before is refused."""
    long = {"name": "long", "n_harmonics": 1, "noise": False, "duration": MAX_STAGE_SECONDS + 1}
    for given in (long, list(long.values())):
        with pytest.raises(ValueError, match="stage 'long'.*duration"):
            stages_from_table([given])
    with pytest.raises(ValueError, match="duration"):
        grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC), [long])
    with pytest.raises(ValueError, match="duration"):
        Stage("long", 1, False, MAX_STAGE_SECONDS + 1)
    longest = stages_from_table([dict(long, duration=MAX_STAGE_SECONDS)])
    assert longest[0].duration == MAX_STAGE_SECONDS


FORM_ROWS = [
    {"name": "root", "n_harmonics": "1", "noise": "off", "duration": "0.3"},
    {"name": "five", "n_harmonics": 5, "noise": False, "duration": 0.25},
    ["breath", "all", "on", "0.45"],
]


def test_edited_stages_validate_and_render(small_model):
    stages = stages_from_table(FORM_ROWS)
    assert stages == [Stage("root", 1, False, 0.3), Stage("five", 5, False, 0.25),
                      Stage("breath", None, True, 0.45)]
    audio = grow_timbre(small_model, 220.0, -20.0, np.zeros(N_MFCC), stages=stages)
    assert len(audio) == round(1.0 * SAMPLE_RATE)
    assert stages_from_table(stages_to_table(GROWTH_STAGES)) == list(GROWTH_STAGES)


@pytest.mark.parametrize("field, value, why", [
    ("duration", "-1", "duration"), ("duration", "abc", "duration"), ("duration", 0, "duration"),
    ("duration", "1e9", "duration"), ("n_harmonics", "2.5", "n_harmonics"),
    ("n_harmonics", -3, "n_harmonics"), ("n_harmonics", "many", "n_harmonics"),
    ("noise", "maybe", "noise"), ("noise", 7, "noise"),
])
def test_bad_stage_values_name_the_stage(field, value, why):
    rows = [dict(r) if isinstance(r, dict) else r for r in FORM_ROWS]
    rows[1] = {**rows[1], field: value}
    with pytest.raises(ValueError, match=r"stage 'five'") as info:
        stages_from_table(rows)
    assert why in str(info.value)
    with pytest.raises(ValueError, match="lacks"):
        stages_from_table([{"name": "x", "noise": True, "duration": 1}])


def test_stage_controls_mask_harmonics_and_noise(small_model):
    stages = stages_from_table(FORM_ROWS)
    info = stage_controls(small_model, 220.0, -20.0, np.zeros(N_MFCC), stages)
    assert [i["name"] for i in info] == ["root", "five", "breath"]
    root, five, breath = (i["harmonic_amplitudes"] for i in info)
    assert root[0] > 0 and np.all(root[1:] == 0)
    assert np.all(five[:5] > 0) and np.all(five[5:] == 0)
    assert np.count_nonzero(breath) > 5
    assert np.all(info[0]["noise_response"] == 0) and np.all(info[1]["noise_response"] == 0)
    assert info[2]["noise_response"].max() > 0
    assert len(info[2]["noise_frequencies"]) == len(info[2]["noise_response"])


# Issue 13, class 6: Stage is the one place a stage's values are checked, strictly.
@pytest.mark.parametrize("duration", ["1e-9", 1e-9, 0.01, MIN_STAGE_SECONDS * 0.99])
def test_a_stage_shorter_than_a_few_frames_is_refused_before_the_model(duration, small_model):
    """A '1e-9' s stage passed the table and crashed inside the GRU (no frame to run on)."""
    rows = [("blink", 1, "off", duration)]
    with pytest.raises(ValueError, match=r"stage 'blink': duration must be 0.05 to 30 s "
                                         r"\(MIN_STAGE_SECONDS, MAX_STAGE_SECONDS\)"):
        grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC), rows)


def test_the_shortest_stage_renders(small_model):
    audio = grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC),
                        [("short", 1, "off", MIN_STAGE_SECONDS)] * 2)
    assert len(audio) == round(2 * MIN_STAGE_SECONDS * SR) and np.all(np.isfinite(audio))


@pytest.mark.parametrize("count", ["none", "None", "", " ", "*", "3.5", "three", "1e3", "-1",
                                   True, False, 2.5, -1, float("nan"), float("inf"), [3]])
def test_a_harmonic_count_is_a_whole_number_or_all_and_nothing_else(count):
    """'none' meant all harmonics: a word that reads as zero must not play every harmonic."""
    with pytest.raises(ValueError, match=r"stage 'x': n_harmonics must be a whole number >= 0 "
                                         r"or 'all', got "):
        Stage("x", count, False, 1.0)


@pytest.mark.parametrize("count, expected", [
    ("all", None), (" ALL ", None), (None, None), ("3", 3), (" 12 ", 12), (0, 0), (3, 3),
    (3.0, 3), (np.int64(4), 4), (np.float32(5.0), 5)])
def test_harmonic_counts_that_are_taken(count, expected):
    assert Stage("x", count, False, 1.0).n_harmonics == expected


@pytest.mark.parametrize("rows, message", [
    ([{"name": "wide", "n_harmonics": 2, "noise": False, "duration": 1, "gain": 2}],
     r"stage 'wide' \(row 1\) has unknown field\(s\) \['gain'\]"),
    ([GROWTH_STAGES[0], {"name": "typo", "harmonics": 2, "noise": False, "duration": 1}],
     r"stage 'typo' \(row 2\) lacks \['n_harmonics'\] and has unknown field\(s\) "
     r"\['harmonics'\]"),
    ([("three", 3, "off")], r"stage 'three' \(row 1\) has 3 values, not 4"),
    ([("five", 5, "off", 1.0, "extra")], r"stage 'five' \(row 1\) has 5 values, not 4"),
    ([GROWTH_STAGES[0], "fundamental"], r"stage row 2: a stage is a Stage, a dict or a "
                                        r"sequence .* got str 'fundamental'"),
    ([GROWTH_STAGES[0], 7], r"stage row 2: .* got int 7"),
    ({"name": "alone", "n_harmonics": 1, "noise": False, "duration": 1},
     r"stages are a list of stages \(put one stage in a list\), got dict"),
    (GROWTH_STAGES[0], r"stages are a list of stages .* got Stage"),
    ([{"name": "loud", "n_harmonics": 1, "noise": 0.5, "duration": 1}],
     r"stage 'loud': noise must be on or off, got 0.5"),
    ([{"name": "arr", "n_harmonics": 1, "noise": np.array([1, 0]), "duration": 1}],
     r"stage 'arr': noise must be on or off"),
])
def test_hand_written_stages_are_refused_naming_the_stage(rows, message, small_model):
    with pytest.raises(ValueError, match=message):
        stages_from_table(rows)
    with pytest.raises(ValueError, match=message):
        grow_timbre(small_model, F0, -25.0, np.zeros(N_MFCC), rows)


@pytest.mark.parametrize("noise, expected", [("on", True), ("", False), (None, False), (1, True),
                                             (0.0, False), (np.bool_(True), True)])
def test_noise_switches_that_are_taken(noise, expected):
    assert Stage("x", 1, noise, 1.0).noise is expected
