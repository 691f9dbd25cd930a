"""The decoder's linear layers on CPU with their weights packed once for oneDNN.

A float32 ``nn.Linear`` on CPU calls MKL's ``sgemm`` on the plain ``[out, in]`` weight. For the shapes a
decode step has (a few to a few dozen rows against a weight streamed from memory) that is slow: oneDNN on the
same weight reordered once into its blocked layout is 2-4x faster per layer at decode shapes on the x86 CPUs it
was measured on, and faster for prefill chunks too (``benchmarks/bench_decode_shapes.py`` prints the timings;
figures in ``benchmarks/ENGINE_NOTES.md``). This is the same packed-weight path PyTorch's own inductor CPU
backend generates (``mkldnn._reorder_linear_weight`` + ``mkldnn._linear_pointwise``).

:func:`pack_linears` swaps each ``nn.Linear`` of the decoder stack for a :class:`PackedLinear` holding only
the packed copy; the plain weight is released. The model is loaded from a memory-mapped file, so the plain
weights remain only as the OS's reclaimable page cache of that file, and the packed copies are new anonymous
memory (for Gemma 3 270M in float32, about 425 MB). The result is float32
throughout; it differs from MKL's in rounding only (last bits, like any change of GEMM kernel or batch shape).

A packed weight is an opaque oneDNN tensor: a model with packed linears runs forward (inference) only; it
cannot be saved, pickled, deep-copied, converted to another dtype or trained. That is why
``TransformersLLM.from_model`` packs only when asked: the model there is the caller's object.

Deliberately not here: the LM head (the engine's bounded int8 scan handles it), other dtypes (bf16 already
goes through oneDNN), and GPUs.
"""

from __future__ import annotations

import platform
from typing import Any

import torch


class PackedLinear(torch.nn.Module):
    """``y = x W^T + b`` with ``W`` held in oneDNN's blocked layout (inference only)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def can_pack() -> bool:
    """Whether this is an x86 CPU (where the speed-up was measured) and this torch build has the oneDNN ops and
    they agree with ``F.linear`` on a small probe."""
    try:
        if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        w, x = torch.randn(48, 40, generator=gen), torch.randn(3, 40, generator=gen)
        with torch.inference_mode():
            y = PackedLinear(linear_holding(w))(x)
        return bool(torch.allclose(y, torch.nn.functional.linear(x, w), rtol=1e-4, atol=1e-4))
    except (RuntimeError, AttributeError):  # an op missing from this build, or not built for this CPU
        return False


def pack_linears(module: Any) -> int:
    """Replace every plain float32 CPU ``nn.Linear`` inside ``module`` by a :class:`PackedLinear`, in place; how
    many. One at a time, so a plain weight held in memory (not memory-mapped) is freed as its copy is made.
    Subclasses of ``nn.Linear`` and weights that are tensor subclasses (quantized, offloaded) are left alone."""
    targets = [
        (parent, name)
        for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear
        and type(child.weight.data) is torch.Tensor
        and child.weight.dtype == torch.float32
        and child.weight.device.type == "cpu"
    ]
    for parent, name in targets:
        setattr(parent, name, PackedLinear(getattr(parent, name)))
    return len(targets)


def linear_holding(weight: torch.Tensor) -> torch.nn.Linear:
    """A bias-free ``nn.Linear`` whose (frozen) weight is ``weight`` (``[out, in]``), built without a random
    initialization: that would cost time for nothing and draw from the global RNG."""
    linear = torch.nn.utils.skip_init(torch.nn.Linear, weight.shape[1], weight.shape[0], bias=False)
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    return linear
