"""DDSP Grown Timbres: learn an instrument's timbre with DDSP and render it growing in stages.

One concern per file, listed as the data flows; each file imports only files above it:

    config       sample rate, hop, FFT sizes: what every stage shares; the size limits
    old_keys     dataclasses read by the keys of the dicts they replaced (old code keeps working)
    markup       text from files and records escaped for HTML and Markdown
    device       picking and naming the device, its free memory, waiting for it
    audio        reading sound files, decoding a browser's recording, finishing renders,
                 wav and atomic writes
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
    synth        harmonic oscillators and filtered noise
    model        the decoder (DDSPModel) and render, the one way to play it
    loss         multi-scale spectral loss + time-domain L1, as named terms
    checkpoints  weights and configuration, saved with checksums and loaded safely; warm starts
    capture      the training state saved and restored; a step recorded as a CUDA graph
    resume       the training history and its epochs (also across changed files); training
                 checkpoints checked part by part, then restored
    train        optimizer, examples per step, the training step and loop
    growth       stages as data (Stage) and grow_timbre
    report       metrics, run records, the comparison table
    records      run records read back: files found under the project only, fields checked
    notes        note lists and MIDI files as Notes
    transfer     melodies and recordings as controls, render_melody
    plots        figures for the notebooks
    notebook     installs, uploads, the microphone in Colab, players, the side-by-side section
    checks       what a run made, checked: wavs, metrics, the growth table (smoke runs)

The notebooks import ddsp_helpers, which names what they use from here. Heavy libraries
(librosa, soundfile, matplotlib, mido, IPython) are imported inside the functions that need
them, so importing any of these files costs torch and numpy only.
"""
