"""The notebooks' one import (`import ddsp_helpers as ddsp`): the names they call, by stage.

The code lives in the package `grown_timbres/`, one concern per file, read in the order the
data flows (see grown_timbres/__init__.py); anything not named here is imported from its own
file, e.g. `from grown_timbres import synth`.

    config       SAMPLE_RATE
    audio        write_wav, read_wav
    features     extract_features
    batching     load_multiple_files, collate, batch_to_device, file_features
    model        DDSPModel
    loss         MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss
    checkpoints  save_checkpoint, load_checkpoint, warm_start
    device       pick_device, device_report, cpu_has_fast_bfloat16
    history      epochs_done
    resume       resume_training
    step         make_optimizer, LEARNING_RATE
    train        train
    growth       GROWTH_STAGES, growth_stages, stages_from_table, held_note, grow_timbre
    scoring      evaluate_batch, mean_metric
    report       metrics_table, growth_table, sources_table
    runs         make_run_record, save_run_record
    notes        parse_note_list
    midi         read_midi
    transfer     notes_to_melody, recording_to_controls, timbre_mfcc, render_melody
    plots        plot_features, plot_loss, plot_growth, plot_stage_controls, plot_transfer
    notebook     install_missing, save_uploads, record_microphone, audio_player, players_table
    comparison   show_comparison
    checks       check_training, cached_and_plain_loss, check_cached_loss, check_run_outputs,
                 check_comparison
"""
from grown_timbres.config import SAMPLE_RATE
from grown_timbres.audio import read_wav, write_wav
from grown_timbres.features import extract_features
from grown_timbres.batching import batch_to_device, collate, file_features, load_multiple_files
from grown_timbres.model import DDSPModel
from grown_timbres.loss import MultiScaleSpectralLoss, OptimizedMultiScaleSpectralLoss
from grown_timbres.checkpoints import load_checkpoint, save_checkpoint, warm_start
from grown_timbres.device import cpu_has_fast_bfloat16, device_report, pick_device
from grown_timbres.history import epochs_done
from grown_timbres.resume import resume_training
from grown_timbres.step import LEARNING_RATE, make_optimizer
from grown_timbres.train import train
from grown_timbres.growth import (GROWTH_STAGES, grow_timbre, growth_stages, held_note,
                                  stages_from_table)
from grown_timbres.scoring import evaluate_batch, mean_metric
from grown_timbres.report import growth_table, metrics_table, sources_table
from grown_timbres.runs import make_run_record, save_run_record
from grown_timbres.midi import read_midi
from grown_timbres.notes import parse_note_list
from grown_timbres.transfer import (notes_to_melody, recording_to_controls, render_melody,
                                    timbre_mfcc)
from grown_timbres.plots import (plot_features, plot_growth, plot_loss, plot_stage_controls,
                                 plot_transfer)
from grown_timbres.notebook import (audio_player, install_missing, players_table,
                                    record_microphone, save_uploads)
from grown_timbres.comparison import show_comparison
from grown_timbres.checks import (cached_and_plain_loss, check_cached_loss, check_comparison,
                                  check_run_outputs, check_training)
