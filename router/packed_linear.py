"""Linear layers whose weights are laid out once for oneDNN, for a model copy that only serves.

A plain bf16 `nn.Linear` on the CPU hands oneDNN a row-major weight, which it re-lays out into its
blocked format on every call. Packing each weight once skips that: measured here (2 cores, bf16), a
576x1536 product takes 78 instead of 137 µs for a 3-token step and ~6% less for a 640-token prefill.
The products are bit-identical to `nn.Linear`'s; a layer is packed only where a probe shows that (bf16
does; fp32 does not, as its plain path runs another kernel), so answers and confidences never change.

Only for model copies nothing else reads weights from: a packed layer has no `weight` parameter, so
PEFT cannot wrap it, LoRA cannot merge into it and it cannot be trained or saved.
"""

from __future__ import annotations

import torch


class PackedLinear(torch.nn.Module):
    """`nn.Linear`'s product with the weight pre-packed by oneDNN (serving only: no gradients)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # A plain attribute, not a parameter or buffer: .to(), state_dict() and PEFT leave it alone.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 16)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _packs_exactly(linear: torch.nn.Linear) -> bool:
    """Whether this torch build packs this layer's dtype with bit-identical results (one probe product)."""
    if linear.weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        probe = torch.randn(5, linear.in_features, generator=torch.Generator().manual_seed(0)).to(linear.weight.dtype)
        return torch.equal(PackedLinear(linear)(probe), torch.nn.functional.linear(probe, linear.weight, linear.bias))
    except (RuntimeError, AttributeError):  # no oneDNN linear ops in this build, or not for this dtype
        return False


@torch.no_grad()
def pack_linears(model: torch.nn.Module) -> int:
    """Replace the model's plain linear layers (not its output head) by packed ones, in place; how many."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    targets = [(name, m) for name, m in model.named_modules() if type(m) is torch.nn.Linear and m is not head]
    exact: dict[torch.dtype, bool] = {}  # probed once per weight dtype
    packed = 0
    for name, linear in targets:
        dtype = linear.weight.dtype
        if dtype not in exact:
            exact[dtype] = _packs_exactly(linear)
        if exact[dtype]:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, PackedLinear(linear))
            packed += 1
    return packed
