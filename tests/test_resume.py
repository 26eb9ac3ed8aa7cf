"""grown_timbres/resume.py: a training checkpoint is checked part by part before anything is
restored (a refused one names the file and the part and changes nothing), checkpoints from
before checksums still resume with one line, NaN Adam moments left by an earlier version start
Adam afresh, and a changed set of files counts its epochs by the stated rule, never training
past the requested epochs."""
import math
import warnings

import numpy as np
import pytest
import torch

from grown_timbres.checkpoints import CHECKSUMS, part_checksums
from grown_timbres.config import N_MFCC, SAMPLE_RATE
from grown_timbres.loss import MultiScaleSpectralLoss
from grown_timbres.model import DDSPModel
from grown_timbres.history import epochs_done
from grown_timbres.resume import resume_training
from grown_timbres.step import make_optimizer
from grown_timbres.train import train
from conftest import FIXTURES, batch_of_rows

FRAMES = 24
# Written by train() with the code of commit caab386, before checkpoints had checksums: a
# DDSPModel(**OLD_CONFIG), 3 epochs of the two rows of tone_batch(2), Adam, no scaler.
OLD_CHECKPOINT = FIXTURES / "training_checkpoint_before_checksums.pt"
OLD_CONFIG = dict(hidden_size=8, n_harmonics=8, n_noise_bands=8, z_dim=4)


def tone_batch(n_files=2):
    """n_files rows of a 220 Hz tone at falling levels, the second 4 frames shorter; rows
    beyond two are new files (c.wav, ...), so a batch of 3 is another set of files."""
    g = torch.Generator().manual_seed(1)
    tone = 0.3 * torch.sin(2 * np.pi * 220 * torch.arange(FRAMES * 256) / SAMPLE_RATE)
    lengths = torch.tensor([FRAMES, FRAMES - 4, FRAMES, FRAMES - 2][:n_files])
    return batch_of_rows({"f0": torch.full((n_files, FRAMES, 1), 220.0),
                          "loudness": torch.full((n_files, FRAMES, 1), -20.0),
                          "mfcc": torch.randn(n_files, FRAMES, N_MFCC, generator=g),
                          "audio": torch.stack([tone / (i + 1) for i in range(n_files)]),
                          "lengths": lengths}, ["a.wav", "b.wav", "c.wav", "d.wav"][:n_files])


def fresh(seed=0):
    torch.manual_seed(seed)
    model = DDSPModel(**OLD_CONFIG)
    return model, make_optimizer(model)


def trained_checkpoint(path, n_epochs=2, **kwargs):
    """Train fresh() for n_epochs on tone_batch() with a checkpoint at `path` -> the model."""
    model, optimizer = fresh()
    train(model, optimizer, tone_batch(), MultiScaleSpectralLoss(), n_epochs, progress=False,
          checkpoint_path=path, **kwargs)
    return model


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """The bytes of trained_checkpoint's 2-epoch checkpoint (trained once for this file)."""
    path = tmp_path_factory.mktemp("resume") / "ck.pt"
    trained_checkpoint(path)
    return path.read_bytes()


def rewrite(path, change):
    """Change the checkpoint at `path` with change(payload) and write it back with checksums
    that match: a file that another program wrote wrongly, not a damaged one."""
    payload = torch.load(path, weights_only=True)
    payload.pop(CHECKSUMS)
    change(payload)
    payload[CHECKSUMS] = part_checksums(payload)
    torch.save(payload, path)


def state_of(model, optimizer, scaler):
    return ([p.detach().clone() for p in model.parameters()], len(optimizer.state),
            scaler.state_dict(), torch.get_rng_state())


def assert_unchanged(before, after):
    assert all(torch.equal(a, b) for a, b in zip(before[0], after[0]))
    assert before[1:3] == after[1:3] and torch.equal(before[3], after[3])


def assert_refused_leaving_all_unchanged(path, message):
    """resume_training of `path` into a fresh model raises ValueError matching `message`, and
    model, optimizer, GradScaler and random state are as they were."""
    model, optimizer = fresh(seed=3)
    scaler = torch.amp.GradScaler("cpu")
    before = state_of(model, optimizer, scaler)
    with pytest.raises(ValueError, match=message):
        resume_training(path, model, optimizer, scaler)
    assert_unchanged(before, state_of(model, optimizer, scaler))


# ------------------------------------------------------------------ checkpoints from before
def test_an_old_checkpoint_resumes_with_one_line_saying_it_cannot_be_verified():
    model, optimizer = fresh(seed=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = resume_training(OLD_CHECKPOINT, model, optimizer, batch=tone_batch())
    assert [str(w.message) for w in caught] == [
        f"{OLD_CHECKPOINT}: written before checkpoints had checksums, so its contents cannot "
        "be verified"]
    saved = torch.load(OLD_CHECKPOINT, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v)
               for k, v in saved["model_state_dict"].items())
    assert len(history["loss"]) == 3 and epochs_done(history) == 3
    train(model, optimizer, tone_batch(), MultiScaleSpectralLoss(), 1, progress=False,
          history=history)
    assert len(history["loss"]) == 4 and math.isfinite(history["loss"][-1])


def test_the_old_fixture_is_small_and_has_no_checksums():
    assert OLD_CHECKPOINT.stat().st_size < 2**20
    assert CHECKSUMS not in torch.load(OLD_CHECKPOINT, weights_only=True)


# ------------------------------------------------------------------ damaged and wrong parts
@pytest.mark.parametrize("part, damage", [
    ("model_state_dict", lambda c: c["model_state_dict"]["out_proj.bias"].add_(1e-3)),
    ("optimizer_state_dict",
     lambda c: c["optimizer_state_dict"]["state"][0]["exp_avg"].view(-1)[0].add_(1.0)),
    ("rng_state", lambda c: c["rng_state"].__setitem__(100, c["rng_state"][100] ^ 1)),
    ("history", lambda c: c["history"]["loss"].__setitem__(0, 0.5)),
])
def test_a_changed_part_is_refused_by_its_checksum(tmp_path, two_epochs, part, damage):
    (tmp_path / "ck.pt").write_bytes(two_epochs)
    payload = torch.load(tmp_path / "ck.pt", weights_only=True)
    damage(payload)  # the checksums stay as written: the file changed after it was written
    torch.save(payload, tmp_path / "ck.pt")
    assert_refused_leaving_all_unchanged(tmp_path / "ck.pt",
                                         rf"ck\.pt: {part} does not match its checksum")


def test_a_flipped_bit_in_the_file_is_refused(tmp_path, two_epochs):
    """One bit of the stored weights flipped on disk (torch's zip reader does not notice)."""
    import struct
    import zipfile

    (tmp_path / "ck.pt").write_bytes(two_epochs)
    with zipfile.ZipFile(tmp_path / "ck.pt") as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename),
                    key=lambda i: i.file_size)
    raw = bytearray((tmp_path / "ck.pt").read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[entry.header_offset + 26:
                                                         entry.header_offset + 30])
    raw[entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2] ^= 0x10
    (tmp_path / "ck.pt").write_bytes(raw)
    model, optimizer = fresh(seed=3)
    with pytest.raises(ValueError, match=r"ck\.pt: \w+ does not match its checksum"):
        resume_training(tmp_path / "ck.pt", model, optimizer)


def _set_group_lr(c):
    c["optimizer_state_dict"]["param_groups"][0]["lr"] = math.nan


BAD_PARTS = {  # change, the message's words after the file name
    "weights": (lambda c: c["model_state_dict"]["out_proj.bias"].fill_(math.nan),
                "model_state_dict: out_proj.bias holds NaN or inf values"),
    "moment shape": (lambda c: c["optimizer_state_dict"]["state"][0].update(
        exp_avg=torch.zeros(3)),
        r"optimizer_state_dict: state 0: exp_avg has shape \(3,\), its parameter \(20,\)"),
    "optimizer": (lambda c: c.update(optimizer_state_dict={"state": 1}),
                  "optimizer_state_dict is not an optimizer's state"),
    "stray state": (lambda c: c["optimizer_state_dict"]["state"].update({999: {}}),
                    "optimizer_state_dict: state 999 belongs to no parameter"),
    "step": (lambda c: c["optimizer_state_dict"]["state"][0].update(step=torch.tensor(-1.0)),
             "optimizer_state_dict: state 0: step is"),
    "learning rate": (_set_group_lr, "optimizer_state_dict: parameter group 0: lr is nan"),
    "no betas": (lambda c: c["optimizer_state_dict"]["param_groups"][0].pop("betas"),
                 "optimizer_state_dict: parameter group 0 has no betas"),
    "another optimizer": (lambda c: c["optimizer_state_dict"]["state"][0].pop("exp_avg_sq"),
                          r"optimizer_state_dict: state 0 holds \['exp_avg', 'step'\], Adam "
                          r"keeps \['exp_avg', 'exp_avg_sq', 'step'\]"),
    "random size": (lambda c: c.update(rng_state=torch.zeros(7, dtype=torch.uint8)),
                    "rng_state is not a cpu generator's state"),
    "random dtype": (lambda c: c.update(rng_state=c["rng_state"].float()),
                     r"rng_state is not a generator's state \(a uint8 tensor\)"),
    "scaler": (lambda c: c.update(scaler_state_dict={"scale": -1.0}),
               "scaler_state_dict: scale is -1.0"),
    "history": (lambda c: c.update(history=[1, 2]), "history is a list, not a dict"),
    "loss": (lambda c: c["history"].update(loss=["x"]), "history: loss is not a list of finite"),
    "terms": (lambda c: c["history"]["terms"].update(spectral=[0.1]),
              r"history: terms\['spectral'\] is not a list of 2 numbers"),
    "timing": (lambda c: c["history"].update(timed_steps=[2, 1]),
               "history: timed_steps are not rising"),
    "old timing": (lambda c: c["history"].update(timed_epochs=[2, 1]) or c["history"].pop(
        "timed_steps"), "history: timed_steps are not rising"),  # as written before History
    "steps per epoch": (lambda c: c["history"].update(steps_per_epoch=0),
                        "history: steps_per_epoch is 0"),
    "files": (lambda c: c["history"].update(files=["a.wav"]),
              r"history: files is not a list of \[file name, seconds\]"),
}


@pytest.mark.parametrize("name", BAD_PARTS)
def test_a_wrong_part_is_refused_before_anything_changes(tmp_path, two_epochs, name):
    """Each part is checked before the model, optimizer, scaler or random state is touched,
    and the message names the file and the part (never an error from deep inside torch)."""
    change, message = BAD_PARTS[name]
    (tmp_path / "ck.pt").write_bytes(two_epochs)
    rewrite(tmp_path / "ck.pt", change)
    assert_refused_leaving_all_unchanged(tmp_path / "ck.pt", rf"ck\.pt: {message}")


def test_nan_adam_moments_from_an_earlier_version_start_adam_afresh(tmp_path):
    """The previous version's NaN stop could leave NaN moments in the checkpoint, and every
    resumed run stopped two steps later. Now the weights and history resume, Adam starts
    afresh with one warning, and training goes on with finite losses."""
    model = trained_checkpoint(tmp_path / "ck.pt")
    rewrite(tmp_path / "ck.pt", lambda c: [entry["exp_avg_sq"].fill_(math.nan) for entry in
                                           c["optimizer_state_dict"]["state"].values()])
    resumed, optimizer = fresh(seed=3)
    with pytest.warns(UserWarning, match=r"ck\.pt: Adam's moments hold NaN or inf values "
                                         r"\(0\.exp_avg_sq and more; .*Adam starts afresh"):
        history = resume_training(tmp_path / "ck.pt", resumed, optimizer)
    assert not optimizer.state
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), model.parameters()))
    train(resumed, optimizer, tone_batch(), MultiScaleSpectralLoss(), 4, progress=False,
          history=history)
    assert history["status"] == "finished" and len(history["loss"]) == 6
    assert np.isfinite(history["loss"]).all()


# ------------------------------------------------------------------ a changed set of files
def test_a_changed_set_of_files_counts_epochs_in_examples_and_warns(tmp_path):
    """8 epochs of 2 examples at 1 a step (16 steps), resumed on 4 examples: they count as
    4 epochs of the 4, so training to 10 epochs takes 6 more (24 steps), not 2 and not 8."""
    trained_checkpoint(tmp_path / "ck.pt", n_epochs=8, batch_size=1)
    model, optimizer = fresh(seed=3)
    with pytest.warns(UserWarning, match=r"ck\.pt: trained on other files than these \(new "
                                         r"c\.wav, d\.wav\): its 8 epochs of 2 examples count "
                                         r"as 4 epochs of the 4 examples now"):
        history = resume_training(tmp_path / "ck.pt", model, optimizer, batch=tone_batch(4))
    assert epochs_done(history) == 4
    history = train(model, optimizer, tone_batch(4), MultiScaleSpectralLoss(),
                    10 - epochs_done(history), batch_size=1, progress=False, history=history)
    assert len(history["loss"]) == 16 + 24 and epochs_done(history) == 10


def test_a_changed_set_of_files_never_trains_past_the_requested_epochs(tmp_path):
    """8 epochs of 2 examples resumed on 3: 16/3 epochs done, and asking for 7 trains whole
    steps up to 7 and not past them (a step here is an epoch of the 3)."""
    trained_checkpoint(tmp_path / "ck.pt", n_epochs=8)
    model, optimizer = fresh(seed=3)
    history = train(model, optimizer, tone_batch(3), MultiScaleSpectralLoss(), 0,
                    progress=False, history=None)  # a fresh history: no warning, nothing done
    assert epochs_done(history) == 0 and history["files"][2][0] == "c.wav"
    with pytest.warns(UserWarning, match="count as 5.33 epochs of the 3 examples"):
        history = resume_training(tmp_path / "ck.pt", model, optimizer, batch=tone_batch(3))
    history = train(model, optimizer, tone_batch(3), MultiScaleSpectralLoss(),
                    7 - epochs_done(history), progress=False, history=history)
    assert len(history["loss"]) == 8 + 1 and 6 < epochs_done(history) <= 7


def test_a_history_of_other_files_passed_to_train_by_hand_is_counted_the_same(tmp_path):
    """Without resume_training's batch, train itself notices the other files and warns."""
    trained_checkpoint(tmp_path / "ck.pt", n_epochs=8, batch_size=1)
    model, optimizer = fresh(seed=3)
    history = resume_training(tmp_path / "ck.pt", model, optimizer)
    with pytest.warns(UserWarning, match="count as 4 epochs of the 4 examples now"):
        train(model, optimizer, tone_batch(4), MultiScaleSpectralLoss(), 1, batch_size=1,
              progress=False, history=history)
    assert len(history["loss"]) == 16 + 4 and epochs_done(history) == 5


def test_the_same_files_resume_without_a_word(tmp_path):
    trained_checkpoint(tmp_path / "ck.pt", n_epochs=2)
    model, optimizer = fresh(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = resume_training(tmp_path / "ck.pt", model, optimizer, batch=tone_batch())
        train(model, optimizer, tone_batch(), MultiScaleSpectralLoss(), 1, progress=False,
              history=history)
    assert epochs_done(history) == 3 and history.steps_before == history.epochs_before == 0


# ------------------------------------------------------------------ the GradScaler
def test_resume_restores_the_scaler_and_continues_bit_for_bit(tmp_path):
    """train with a GradScaler that grows (growth_interval 2: 2^10 -> 2^12 after 5 steps,
    growth tracker 1), checkpoint, resume into a fresh model, optimizer and a default scaler:
    the scaler's scale, growth tracker and settings come back, and 3 more epochs equal an
    uninterrupted 8-epoch run exactly (losses, weights, scaler)."""
    batch = tone_batch()

    def new_scaler():
        return torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)

    straight_model, straight_optimizer = fresh()
    straight_scaler = new_scaler()
    straight = train(straight_model, straight_optimizer, batch, MultiScaleSpectralLoss(), 8,
                     scaler=straight_scaler, progress=False)

    model, optimizer = fresh()
    scaler = new_scaler()
    train(model, optimizer, batch, MultiScaleSpectralLoss(), 5, scaler=scaler, progress=False,
          checkpoint_path=tmp_path / "ck.pt")
    saved_state = scaler.state_dict()
    assert saved_state["scale"] == 2.0 ** 12 and saved_state["_growth_tracker"] == 1

    resumed_model, resumed_optimizer = fresh(seed=123)  # the checkpoint must replace these
    resumed_scaler = torch.amp.GradScaler("cpu")  # defaults: 2^16, growth every 2000 steps
    history = resume_training(tmp_path / "ck.pt", resumed_model, resumed_optimizer,
                              resumed_scaler)
    assert resumed_scaler.state_dict() == saved_state
    assert resumed_scaler.get_scale() == 2.0 ** 12
    history = train(resumed_model, resumed_optimizer, batch, MultiScaleSpectralLoss(), 3,
                    scaler=resumed_scaler, progress=False, history=history)
    assert history.loss == straight.loss and len(history.loss) == 8
    assert history.skipped_steps == straight.skipped_steps == 0
    assert resumed_scaler.state_dict() == straight_scaler.state_dict()
    assert resumed_scaler.get_scale() == 2.0 ** 14
    assert all(torch.equal(a, b) for a, b in zip(resumed_model.parameters(),
                                                  straight_model.parameters()))
