"""Prepare scripts/gpu_check.py for a GPU machine that reaches no package registry (issue 22).

Run here, on the CPU machine, before a GPU machine is lent:

    python scripts/prepare_gpu_check.py

1. Downloads into .whl/ (git-ignored) the wheels, for the GPU machine's Python 3.12 on
   manylinux x86_64, of every package the check needs that its image lacks (CARRIED: librosa,
   soundfile and the notebook tools, each at the version installed here, the one the tests
   ran with), never torch, numpy or anything else the image has (IMAGE_PACKAGES), and checks
   that every requirement of every wheel is either carried or in the image.
2. Fills outputs/feature_cache/ (git-ignored) with the features of every file the check
   trains on (the 12 bundled tones; the long take is built from them), so that no pYIN runs
   in the optimized notebook, the benchmark or the long take there.
3. Checks that the working tree plus what is carried fits the transfer limit, and prints the
   device command and its carry list.

The check installs from .whl/ alone, with --no-index --no-deps into a --target folder put on
PYTHONPATH: the image's torch and numpy are never replaced.
"""
from __future__ import annotations

import argparse
import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHEEL_DIR = ROOT / ".whl"
FEATURE_CACHE = ROOT / "outputs" / "feature_cache"
CARRY = [".whl", "outputs/feature_cache"]
TRANSFER_LIMIT_BYTES = 64 * 2**20  # the working tree and carried paths, one call
PYTHON_VERSION = "3.12"  # the GPU image's python3 (3.12.3)
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 26, 27, 28, 31, 34, 35, 39)] + [
    "manylinux2014_x86_64", "manylinux1_x86_64"]

# What the check needs that the image lacks (pip names): librosa and the audio readers for the
# features and the notebooks, the notebook kernel and its client for running them headless,
# ipywidgets for the notebooks' upload widget, mido for their MIDI reader.
CARRIED = [
    "librosa", "audioread", "pooch", "platformdirs", "soxr", "soundfile", "cffi", "pycparser",
    "decorator", "mido",
    "nbclient", "nbformat", "fastjsonschema", "jsonschema", "jsonschema-specifications",
    "referencing", "rpds-py", "jupyter-core", "jupyter-client", "pyzmq", "tornado",
    "traitlets", "ipykernel", "comm", "debugpy", "ipython", "ipython-pygments-lexers", "jedi",
    "parso", "matplotlib-inline", "pexpect", "ptyprocess", "prompt-toolkit", "wcwidth",
    "stack-data", "executing", "asttokens", "pure-eval", "nest-asyncio2",
    "ipywidgets", "widgetsnbextension", "jupyterlab-widgets",
]

# The GPU image's Python packages, as device/KINDS.md lists them (2026-11-17): never carried.
IMAGE_PACKAGES = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

DEVICE_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; "
    "set -o pipefail; PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --out \"$OUT\" 2>&1 "
    "| tee \"$OUT/gpu_check.log\"")


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pinned(name: str) -> str:
    """name==the version installed here (what the tests ran with), or the bare name."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def download_wheels() -> list[Path]:
    """CARRIED's wheels for the GPU machine, into a fresh WHEEL_DIR (one version of each)."""
    overlap = sorted(set(map(normalized, CARRIED)) & IMAGE_PACKAGES)
    if overlap:
        raise SystemExit(f"prepare_gpu_check: {overlap} are in the GPU image: carrying them "
                         "would shadow the image's own")
    staging = Path(tempfile.mkdtemp(prefix="whl-", dir=ROOT))
    try:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                   "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                   "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
                   "-d", str(staging), *map(pinned, CARRIED)]
        subprocess.run(command, check=True)
        if WHEEL_DIR.exists():
            shutil.rmtree(WHEEL_DIR)
        staging.rename(WHEEL_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(WHEEL_DIR.glob("*.whl"))


def unmet_requirements(wheels: list[Path]) -> list[str]:
    """Requirements of the wheels (for Python 3.12 on Linux, no extras) that are neither
    carried nor in the image: the check would fail to import them there."""
    from packaging.requirements import Requirement

    environment = {"python_version": PYTHON_VERSION, "python_full_version": "3.12.3",
                   "sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "posix",
                   "extra": ""}
    carried = set(map(normalized, CARRIED))
    unmet = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = email.parser.Parser().parsestr(archive.read(name).decode())
        for line in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            needed = normalized(requirement.name)
            if needed not in carried and needed not in IMAGE_PACKAGES:
                unmet.append(f"{wheel.name} needs {line}")
    return unmet


def fill_feature_cache() -> int:
    """The bundled tones' features into FEATURE_CACHE (pYIN runs here, once)."""
    from grown_timbres.batching import load_multiple_files

    tones = sorted((ROOT / "scale_tones").glob("*.wav"))
    load_multiple_files(tones, progress=False, cache_dir=FEATURE_CACHE)
    return len(tones)


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() \
        else path.stat().st_size


def travelling_tree_bytes() -> int:
    """Tracked files plus untracked files git does not ignore: what travels besides CARRY."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    return sum((ROOT / name).stat().st_size for name in listed
               if name and (ROOT / name).is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-download", action="store_true",
                        help="keep .whl/ as it is (only fill the cache and check sizes)")
    args = parser.parse_args(argv)
    wheels = sorted(WHEEL_DIR.glob("*.whl")) if args.skip_download else download_wheels()
    unmet = unmet_requirements(wheels)
    n_tones = fill_feature_cache()
    tree, whl, cache = travelling_tree_bytes(), size_of(WHEEL_DIR), size_of(FEATURE_CACHE)
    total = tree + whl + cache
    mib = 2**20
    print(f"wheels: {len(wheels)} in .whl/, {whl / mib:.1f} MiB")
    print(f"feature cache: {n_tones} tones in outputs/feature_cache/, {cache / mib:.1f} MiB")
    print(f"working tree that travels: {tree / mib:.1f} MiB")
    print(f"total: {total / mib:.1f} MiB of the {TRANSFER_LIMIT_BYTES / mib:.0f} MiB limit")
    print(f"device command ({len(DEVICE_COMMAND)} characters):\n{DEVICE_COMMAND}")
    print(f"carry: {CARRY}")
    problems = [f"unmet: {u}" for u in unmet]
    if total > TRANSFER_LIMIT_BYTES:
        problems.append(f"{total / mib:.1f} MiB would travel, over the "
                        f"{TRANSFER_LIMIT_BYTES / mib:.0f} MiB limit")
    for problem in problems:
        print("prepare_gpu_check:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
