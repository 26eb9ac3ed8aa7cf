"""DDSP Grown Timbres: learn an instrument's timbre with DDSP and render it growing in stages.

One concern per file, listed as the data flows; each file imports only files above it:

    config       sample rate, hop, FFT sizes: what every stage shares; the size limits
    old_keys     dataclasses read by the keys of the dicts they replaced (old code keeps working)
    markup       text from files and records escaped for HTML and Markdown
    device       picking and naming the device, its free memory, waiting for it
    files        atomic writes, their temporary names and locks; what kind of file a path is
    audio        reading sound files, decoding a browser's recording, finishing renders, wavs
    numba_cache  librosa's compiled kernels: the project's cache folder, one compiling
                 process at a time, a damaged cache found by a probe and rebuilt
    worker_pool  work spread over processes, which the stop button stops at once
    feature_cache  cache entries: the digest naming them, written, read without trusting them
    pitch        MIDI note numbers and Hz
    analysis     pYIN f0, A-weighted loudness, MFCCs per frame, a chunk at a time
    features     one file's Features, their cache, many files at once
    training_set the TrainingSet: excerpts, examples, sources, errors (typed)
    batching     files as training examples and listening excerpts, padded (collate), the
                 batches of training steps
    synth        harmonic oscillators, filtered noise, the room's convolution
    model_config  ModelConfig: the model's sizes, rates and optional parts, checked; old ones read
    part         SynthPart: what a synthesizer part declares (controls, gain, lr scale, tail)
    harmonic_part  the harmonic oscillators as a part
    noise_part   the filtered noise as a part
    room_part    the learned room as a part
    model        the decoder (DDSPModel) over its list of parts, and render, the one way to play it
    loss         multi-scale spectral loss + time-domain L1, as named terms
    checkpoints  weights and configuration, saved with checksums and loaded safely; warm starts
    capture      the training state saved and restored; a step recorded as a CUDA graph
    history      the training History and its epochs (also across changed files)
    resume       training checkpoints: written, checked part by part, restored
    step         optimizer, examples per step, the training step
    train_options  TrainOptions: how the loop runs, checked when made
    train        the training loop (train)
    stages       growth stages as data (Stage), the default growth, form tables read and written
    growth       a held note grown in stages (grow_timbre); what each stage sounds
    scoring      a resynthesis scored against its files (the one measure), beside a sine
    report       tables: metrics, growth, what training takes from each file, the comparison
    runs         run records made, written, read back with every field checked
    notes        melodies as Notes, from note lists
    midi         MIDI files as Notes
    melody       Notes as controls (attack, release, legato glides, vibrato)
    transfer     recordings as controls, the timbre, render_melody
    plots        figures for the notebooks
    notebook     installs, uploads, the microphone in Colab, players
    comparison   the side-by-side section: the records' files found under the project only
    checks       the smoke runs' checks: training, the cached loss, wavs, metrics, the growth
                 table, the comparison

The notebooks import ddsp_helpers, which names what they use from here. Heavy libraries
(librosa, soundfile, matplotlib, mido, IPython) are imported inside the functions that need
them, so importing any of these files costs torch and numpy only.
"""
