"""Where the model runs: ``TRIAGE_DEVICE`` (auto, cpu or cuda) resolved to a torch device.

The setting only decides where the base model is placed when it is loaded (`router.modelio`); everything
else (prefix caches, batches, masks, training batches) is created on the device of the model it feeds
(`device_of`), so serving and tuning run the same code on a CPU or a GPU.
"""

from __future__ import annotations

import torch


class DeviceError(RuntimeError):
    """TRIAGE_DEVICE names a device this machine (or this torch build) does not have."""


def cuda_unavailable_reason() -> str:
    if not torch.backends.cuda.is_built():
        return f"this torch ({torch.__version__}) was built without CUDA"
    return "torch finds no usable CUDA GPU (driver missing, or CUDA_VISIBLE_DEVICES hides them)"


def resolve_device(setting: str, precision: str = "bf16") -> torch.device:
    """`auto`: cuda when torch sees a GPU, else cpu; `cpu`; `cuda` (DeviceError when there is none).

    int8 (dynamic int8 linear layers) is CPU-only: `auto` then stays on the CPU and `cuda` is refused.
    """
    if setting not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"TRIAGE_DEVICE={setting!r}: choose auto, cpu or cuda")
    available = torch.cuda.is_available()
    if setting == "cuda" and not available:
        raise DeviceError(f"TRIAGE_DEVICE=cuda, but {cuda_unavailable_reason()}; "
                          "set TRIAGE_DEVICE=cpu (or auto: cuda when there is one, else cpu)")
    if setting == "cuda" and precision == "int8":
        raise DeviceError("TRIAGE_DEVICE=cuda, but TRIAGE_PRECISION=int8 (dynamic int8 linear layers) runs on a "
                          "CPU only; use TRIAGE_PRECISION=bf16 or fp32 on a GPU, or TRIAGE_DEVICE=cpu")
    use_cuda = setting == "cuda" or (setting == "auto" and available and precision != "int8")
    return torch.device("cuda" if use_cuda else "cpu")


def device_of(model) -> torch.device:
    """The device of a model's weights (cpu for a model without parameters); a wrapper that is not a module
    itself (e.g. `router.reference.LatePromptReference`) is asked for its `.model`."""
    if not isinstance(model, torch.nn.Module):
        return device_of(model.model)
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")
