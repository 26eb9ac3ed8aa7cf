"""What the learned room buys on a reverberant recording (issue 14, item 2).

The bundled tones are convolved with a synthetic room (exponentially decaying noise after a
direct path; RT60 and direct-to-reverberant ratio below) and three models train with the same
seed, size and epochs: (a) without a room on the dry tones, (b) without a room on the wet tones,
(c) with a room on the wet tones. Each is scored on its own targets by the multi-scale spectral
distance (scoring.evaluate_batch's spectral_distance), mean over files.

With --melody-notes N the recording is instead a melody: N tones, each cut to --note-seconds
(20 ms fade-out), played one after another, dry and in the room (its tail kept). A steady tone
in a room keeps nearly its dry magnitude spectrum (the room colours it, which the harmonic
distribution can learn); in a melody each note still rings under the next ones, which one
harmonic voice cannot play and a room can.

With --noise-lr-scale the room's noise taps learn at that multiple of the learning rate instead
of the product's room_part.ROOM_NOISE_LR_SCALE; --models picks which of the three models train.

    python scripts/measure_room.py --tones 3 --epochs 500 --hidden 64
    python scripts/measure_room.py --melody-notes 6 --note-seconds 0.5 --epochs 3000 --rt60 1.0
    python scripts/measure_room.py --melody-notes 6 --epochs 2000 --rt60 1.0 --models room \
        --noise-lr-scale 1 --out-dir outputs/room_x1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grown_timbres.audio import load_audio, write_wav  # noqa: E402
from grown_timbres.files import atomic_write  # noqa: E402
from grown_timbres.config import SAMPLE_RATE  # noqa: E402
from grown_timbres.batching import batch_to_device, load_multiple_files  # noqa: E402
from grown_timbres.loss import OptimizedMultiScaleSpectralLoss  # noqa: E402
from grown_timbres.model import DDSPModel  # noqa: E402
from grown_timbres.scoring import evaluate_batch  # noqa: E402
from grown_timbres.device import cpu_name  # noqa: E402
from grown_timbres.room_part import ROOM_NOISE_LR_SCALE  # noqa: E402
from grown_timbres.step import LEARNING_RATE, make_optimizer  # noqa: E402
from grown_timbres.train import train  # noqa: E402


# --models: each model's name in the record
MODELS = {"room": "room, wet tones", "no-room": "no room, wet tones", "dry": "dry model, dry tones"}


def synthetic_room(rt60: float = 0.8, seconds: float = 1.0, direct_to_reverberant_db: float = 0.0,
                   predelay: float = 0.01, seed: int = 0) -> np.ndarray:
    """A room impulse response [seconds * SR]: a unit direct path, then Gaussian noise from
    `predelay` s on, falling 60 dB in `rt60` s, its energy `direct_to_reverberant_db` below
    the direct path's."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = np.random.default_rng(seed).standard_normal(n) * 10.0 ** (-3.0 * t / rt60)
    tail[t < predelay] = 0.0
    tail *= 10.0 ** (-direct_to_reverberant_db / 20.0) / np.sqrt(np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def melody(paths, note_seconds: float, room_seconds: float, out_dir: Path) -> Path:
    """The tones, each cut to note_seconds with a 20 ms fade-out, one after another, then
    room_seconds of silence (where a room's tail rings): written as melody_dry.wav."""
    fade = np.linspace(1.0, 0.0, int(0.02 * SAMPLE_RATE))
    notes = []
    for path in paths:
        note = load_audio(path)[: int(note_seconds * SAMPLE_RATE)].astype(np.float64)
        note[-len(fade):] *= fade
        notes.append(note)
    notes.append(np.zeros(int(room_seconds * SAMPLE_RATE)))
    return write_wav(out_dir / "melody_dry.wav", np.concatenate(notes))


def reverberant_tones(paths, room: np.ndarray, out_dir: Path) -> list[Path]:
    """Each tone convolved with `room`, its tail kept (a melody's tail: as long as the melody),
    scaled to the dry tone's peak."""
    written = []
    for path in paths:
        dry = load_audio(path)
        wet = np.convolve(dry, room)
        if Path(path).name == "melody_dry.wav":  # its silence already holds the tail
            wet = wet[: len(dry)]
        written.append(write_wav(out_dir / f"wet_{Path(path).stem}.wav",
                                 wet * (np.abs(dry).max() / np.abs(wet).max())))
    return written


def fit_and_score(batch: dict, room: bool, hidden: int, epochs: int, seed: int,
                  noise_lr_scale: float) -> dict:
    torch.manual_seed(seed)
    model = DDSPModel(hidden_size=hidden, room=room)
    optimizer = make_optimizer(model)
    for group in optimizer.param_groups:  # named by model.parameter_groups
        if group["name"] == "room_noise":
            group["lr"] = LEARNING_RATE * noise_lr_scale
    started = time.perf_counter()
    history = train(model, optimizer, batch, OptimizedMultiScaleSpectralLoss(), epochs,
                    desc=f"room={room}", precompute_waves=True)
    seconds = time.perf_counter() - started
    metrics, _ = evaluate_batch(model, batch, progress=False, measures=("spectral_distance",),
                                sine=False)
    scores = [by_kind["model"]["spectral_distance"] for by_kind in metrics.values()]
    result = {"spectral_distance": float(np.mean(scores)), "per_file": scores,
              "final_loss": history.loss[-1], "train_seconds": round(seconds, 1)}
    if room:
        result["room"] = {"level": model.room_level.item(), "decay_seconds": model.room_decay.item()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tones", type=int, default=3, help="bundled tones, evenly spaced")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--rt60", type=float, default=0.8)
    parser.add_argument("--drr-db", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--melody-notes", type=int, default=0,
                        help="0: separate tones; N: one melody of N tones in the room")
    parser.add_argument("--note-seconds", type=float, default=0.5)
    parser.add_argument("--noise-lr-scale", type=float, default=ROOM_NOISE_LR_SCALE,
                        help="the room's noise taps' learning rate over the rest's")
    parser.add_argument("--models", default="room,no-room,dry",
                        help="which of: room (wet tones), no-room (wet tones), dry (dry tones)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "room",
                        help="for the wavs and measure_room.json (rewritten after each model)")
    args = parser.parse_args()

    chosen = args.models.split(",")
    if set(chosen) - set(MODELS):
        parser.error(f"--models {args.models}: choose from {', '.join(MODELS)}")
    tones = sorted((ROOT / "scale_tones").glob("*.wav"))
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.melody_notes:
        up_and_down = tones[::2] + tones[-1::-2]  # a scale in whole tones, up then down
        tones = [melody(up_and_down[: args.melody_notes], args.note_seconds, 1.0, out_dir)]
    else:
        tones = [tones[i] for i in np.linspace(0, len(tones) - 1, args.tones).round().astype(int)]
    wet_paths = reverberant_tones(tones, synthetic_room(args.rt60, direct_to_reverberant_db=
                                                        args.drr_db, seed=args.seed), out_dir)
    cache = ROOT / "outputs" / "feature_cache"
    dry = batch_to_device(load_multiple_files(tones, progress=False, cache_dir=cache), "cpu")
    wet = batch_to_device(load_multiple_files(wet_paths, progress=False, cache_dir=cache), "cpu")
    runs = {"room": (wet, True), "no-room": (wet, False), "dry": (dry, False)}
    record = {"args": {**vars(args), "out_dir": str(out_dir)}, "tones": [p.name for p in tones],
              "results": {}, "machine": cpu_name(), "torch": torch.__version__}

    def save() -> None:
        record["date"] = datetime.now(timezone.utc).isoformat(timespec="minutes")
        atomic_write(out_dir / "measure_room.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))

    for key in chosen:  # the record is rewritten after each model
        name, (batch, room) = MODELS[key], runs[key]
        record["results"][name] = result = fit_and_score(batch, room, args.hidden, args.epochs,
                                                         args.seed, args.noise_lr_scale)
        print(f"{name}: spectral distance {result['spectral_distance']:.4f} "
              f"({result['train_seconds']} s) {result.get('room', '')}", flush=True)
        save()
    if len(record["results"]) < len(MODELS):
        return
    room_d, plain_d, dry_d = (record["results"][name]["spectral_distance"]
                              for name in MODELS.values())
    record["summary"] = {"room_vs_no_room": 1 - room_d / plain_d, "room_vs_dry": room_d / dry_d - 1}
    print(f"room: {100 * record['summary']['room_vs_no_room']:.1f}% lower than without "
          f"(target >= 20%); {100 * record['summary']['room_vs_dry']:+.1f}% vs the dry model on "
          "dry tones (target within 10%)")
    save()


if __name__ == "__main__":
    main()
