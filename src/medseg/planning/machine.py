"""What this machine can spend on training: CPU cores, RAM and (when present) GPU memory.

The planner sizes patches and batches from these numbers rather than from an imagined GPU, because a
plan that ignores the machine it runs on is unusable on CPU (nnU-Net's 8 GB-GPU plan for ACDC needs
80–100 s per iteration on a 2-core CPU).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medseg.resources import available_ram, check_memory  # noqa: F401 - owned by medseg.resources

#: Effective fp32 convolution throughput assumed per CPU core (FLOP/s) when nothing is measured.
#: Measured on the 2-core development machine by timing plain U-Net training steps against
#: :func:`medseg.planning.cost.unet_step_cost`: 14–45 GFLOP/s per core when the machine was quiet
#: (3D isotropic lowest, 2D highest), 3–6 when seven jobs shared it. We assume 12 per core; use
#: ``medseg plan --measure`` (:func:`measure_throughput`) to plan for the load actually present.
ASSUMED_CPU_FLOPS_PER_CORE = 12e9
#: Effective throughput assumed for a CUDA GPU when nothing is measured (conservative for fp32).
ASSUMED_GPU_FLOPS = 4e12


@dataclass(frozen=True)
class Machine:
    """The compute budget of one machine.

    Attributes
    ----------
    device : str
        ``"cpu"`` or ``"cuda"``.
    cpu_cores : int
        Cores this process may use (affinity and cgroup quota respected).
    ram_bytes : int
        Memory available to this process now (``MemAvailable``, capped by a cgroup limit).
    gpu_name : str or None
    gpu_memory_bytes : int or None
    flops : float
        Effective training throughput (FLOP/s) of the device, measured or assumed.
    flops_measured : bool
        True when ``flops`` comes from :func:`measure_throughput`.
    bfloat16 : bool
        The device computes bfloat16 in hardware (a CUDA GPU that supports it, a CPU with AVX512-BF16 or AMX
        units): training in bfloat16 then takes about half the time of float32 in 3D (``medseg.training.precision``).
    """

    device: str
    cpu_cores: int
    ram_bytes: int
    gpu_name: str | None = None
    gpu_memory_bytes: int | None = None
    flops: float = ASSUMED_CPU_FLOPS_PER_CORE
    flops_measured: bool = False
    bfloat16: bool = False

    @property
    def memory_bytes(self) -> int:
        """Memory of the training device (GPU memory when training on GPU, else RAM)."""
        return int(self.gpu_memory_bytes) if self.device == "cuda" and self.gpu_memory_bytes else self.ram_bytes

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_cores() -> int:
    """Cores usable by this process: scheduler affinity, further limited by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows have no affinity call
        cores = os.cpu_count() or 1
    quota = _read_text(Path("/sys/fs/cgroup/cpu.max"))
    if quota:
        parts = quota.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                cores = min(cores, max(1, int(float(parts[0]) / float(parts[1]))))
            except ValueError:
                pass
    return max(1, cores)


def detect_machine(use_gpu: bool = True) -> Machine:
    """Detect this machine's compute budget.

    Parameters
    ----------
    use_gpu : bool
        Consider a CUDA GPU when torch reports one.

    Returns
    -------
    Machine
        With the assumed throughput; call :func:`measure_throughput` for a measured one.

    Examples
    --------
    >>> m = detect_machine(use_gpu=False)
    >>> m.device, m.cpu_cores >= 1
    ('cpu', True)
    """
    cores = cpu_cores()
    ram = available_ram()
    if use_gpu:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                return Machine("cuda", cores, ram, props.name, int(props.total_memory), ASSUMED_GPU_FLOPS,
                               bfloat16=computes_bfloat16("cuda"))
        except Exception:  # torch missing or a broken driver: plan for the CPU
            pass
    return Machine("cpu", cores, ram, flops=ASSUMED_CPU_FLOPS_PER_CORE * cores, bfloat16=computes_bfloat16("cpu"))


def computes_bfloat16(device: str) -> bool:
    """``device`` ("cpu", "cuda" or "cuda:N") computes bfloat16 in hardware: a CUDA GPU that supports it, a CPU
    with AVX512-BF16 or AMX units. Elsewhere PyTorch emulates bfloat16, slower than float32.

    >>> isinstance(computes_bfloat16("cpu"), bool)
    True
    """
    try:
        import torch

        if device.startswith("cuda"):
            return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # an older torch without the queries (private API) or a broken driver: assume not
        return False


#: Rule: the optimiser updates every parameter in one fused kernel on the devices where PyTorch ships one for AdamW
#: and SGD. On 2 cores AdamW's default per-tensor loop took 9.3 ms per update of ACDC's planned 2D U-Net (7.8M
#: parameters), the fused kernel 2.2 ms, in a supervised step of ~107 ms (`benchmarks/optimizer_step.py`,
#: BENCHMARKS.md session 54). The updates agree to float rounding. In a 3-minute ACDC run the saving stayed below
#: the run-to-run noise: kept because it is the same update for less work, not for a measured gain in steps.
FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def fused_optimizer(device: str) -> bool:
    """The optimiser of a network on ``device`` ("cpu", "cuda", "cuda:N", "mps") runs fused
    (:data:`FUSED_OPTIMIZER_DEVICES`).

    >>> fused_optimizer("cpu"), fused_optimizer("cuda:1"), fused_optimizer("mps")
    (True, True, False)
    """
    return device.split(":")[0] in FUSED_OPTIMIZER_DEVICES


def measure_throughput(machine: Machine, spatial_dims: int = 3, repeats: int = 1, features: int = 16,
                       patch_size: tuple[int, ...] | None = None) -> Machine:
    """Time training steps of the registry's U-Net and return ``machine`` with the measured FLOP/s.

    The rate is the FLOPs that :func:`medseg.planning.cost.unet_step_cost` counts for the step,
    divided by its measured time, so it absorbs what the count leaves out (normalisation, activations,
    the optimiser, this implementation's overheads) and whatever else is running on the machine now.
    Takes a few seconds (longer on a busy machine). ``patch_size`` defaults to 16×32×32 in 3D and
    96×96 in 2D (batch 2).
    """
    import torch

    from medseg.nets import create_network
    from medseg.planning.cost import unet_step_cost
    from medseg.planning.topology import network_topology

    device = torch.device(machine.device)
    patch = tuple(patch_size) if patch_size else ((16, 32, 32) if spatial_dims == 3 else (96, 96))
    batch = 2
    strides, kernels = network_topology((1.0,) * spatial_dims, patch, min_feature_map=min(4, min(patch)))
    max_features = 320 if spatial_dims == 3 else 512
    net = create_network("unet", in_channels=1, num_classes=2, spatial_dims=spatial_dims, features=features,
                         depth=len(strides) - 1, strides=strides[1:], kernel_sizes=kernels,
                         max_features=max_features).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=fused_optimizer(machine.device))
    x = torch.randn(batch, 1, *patch, device=device)
    flops = unet_step_cost(patch, batch, features, strides, kernels, 1, 2, max_features)["flops"]

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        out = net(x)
        out = out["logits"] if isinstance(out, dict) else out
        out.float().square().mean().backward()
        optimiser.step()

    old_threads = torch.get_num_threads()
    if machine.device == "cpu":
        torch.set_num_threads(machine.cpu_cores)
    try:
        step()  # warm-up (oneDNN picks its kernels here)
        best = float("inf")
        for _ in range(repeats):
            if machine.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if machine.device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    from dataclasses import replace

    return replace(machine, flops=flops / best, flops_measured=True)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None
