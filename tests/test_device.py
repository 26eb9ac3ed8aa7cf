"""grown_timbres/device.py: DDSP_CPU_BF16 overrides the hardware's answer to "is bfloat16 fast
here?" (the notebook's and the benchmark's precision on a CPU), in both directions."""
import pytest
import torch

from grown_timbres.device import CPU_BF16_VARIABLE, cpu_has_fast_bfloat16


def hardware_answer(monkeypatch, amx: bool, avx512_bf16: bool):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)


@pytest.mark.parametrize("amx, avx512_bf16", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("value", [None, "auto", "", "on", "ON", " off ", "off"])
def test_ddsp_cpu_bf16_overrides_the_hardware_both_ways(monkeypatch, amx, avx512_bf16, value):
    hardware_answer(monkeypatch, amx, avx512_bf16)
    if value is None:
        monkeypatch.delenv(CPU_BF16_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(CPU_BF16_VARIABLE, value)
    choice = (value or "auto").strip().lower()
    expected = {"on": True, "off": False, "auto": amx or avx512_bf16}[choice]
    assert cpu_has_fast_bfloat16() is expected


@pytest.mark.parametrize("value", ["1", "yes", "bf16", "true", "of"])
def test_any_other_value_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(CPU_BF16_VARIABLE, value)
    with pytest.raises(ValueError, match=rf"DDSP_CPU_BF16='{value}': the environment variable "
                                         r"must be one of on, off, auto"):
        cpu_has_fast_bfloat16()
