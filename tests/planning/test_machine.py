import os

from medseg.planning.machine import (Machine, available_ram, computes_bfloat16, cpu_cores, detect_machine,
                                     measure_throughput)


def test_detects_this_machine():
    m = detect_machine(use_gpu=False)
    assert m.device == "cpu"
    assert 1 <= m.cpu_cores <= (os.cpu_count() or 1)
    assert m.ram_bytes == available_ram() or abs(m.ram_bytes - available_ram()) < 2**30
    assert m.ram_bytes > 2**26
    assert m.flops > 0 and not m.flops_measured
    assert m.memory_bytes == m.ram_bytes
    assert cpu_cores() == m.cpu_cores
    assert m.bfloat16 == computes_bfloat16("cpu") and isinstance(m.bfloat16, bool)  # recorded in every plan


def test_gpu_memory_is_the_budget_on_gpu():
    m = Machine("cuda", 2, 64 * 2**30, "fake", 8 * 2**30, 1e12)
    assert m.memory_bytes == 8 * 2**30


def test_measure_throughput_2d_is_positive_and_marked():
    m = measure_throughput(Machine("cpu", 1, 2**30), spatial_dims=2, repeats=1, features=4, patch_size=(32, 32))
    assert m.flops_measured and 0 < m.flops < 1e14  # no lower bound: a loaded machine is slow
