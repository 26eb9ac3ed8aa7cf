"""The device: picking it, naming it for run records, what it offers (fast bfloat16, free
memory), and waiting for it.

    pick_device() -> cuda or cpu; device_report(device) -> {device, torch, ...};
    free_memory_bytes(device) -> bytes a training step may use
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

CPU_MEMORY_SHARE = 0.5  # of the memory the system reports available: the rest stays for others
CUDA_MEMORY_SHARE = 0.8  # of the free GPU memory: the allocator's fragments and cuDNN need room


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_report(device=None) -> dict:
    """What the run ran on, for the notebook's first cell and the run record."""
    import platform

    device = torch.device(device or pick_device())
    report = {"device_type": device.type, "torch": torch.__version__,
              "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        report.update(device=properties.name, cuda=torch.version.cuda,
                      gpu_memory_gb=round(properties.total_memory / 2**30, 1))
    else:
        report["device"] = cpu_name()
    return report


CPU_BF16_VARIABLE = "DDSP_CPU_BF16"  # on | off | auto (unset: auto)
CPU_BF16_CHOICES = ("on", "off", "auto")


def cpu_has_fast_bfloat16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16): only there does
    CPU autocast to bfloat16 pay; elsewhere it is emulated and slower than float32.

    DDSP_CPU_BF16=on or off overrides what the hardware says (auto, or unset, asks it), so CI
    can run the notebooks and the benchmark in the precision its machine would not pick; any
    other value is a ValueError naming the variable and the choices."""
    choice = os.environ.get(CPU_BF16_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in CPU_BF16_CHOICES:
        raise ValueError(f"{CPU_BF16_VARIABLE}={os.environ[CPU_BF16_VARIABLE]!r}: the "
                         f"environment variable must be one of {', '.join(CPU_BF16_CHOICES)}")
    if choice != "auto":
        return choice == "on"
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def free_memory_bytes(device) -> int:
    """What one training step may use on `device`: CUDA_MEMORY_SHARE of the GPU's free memory,
    or CPU_MEMORY_SHARE of the memory Linux reports available (MemAvailable); elsewhere 4 GiB."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(CUDA_MEMORY_SHARE * free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(CPU_MEMORY_SHARE * int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return 4 * 2**30
