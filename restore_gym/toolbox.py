"""The RL-Restore toolbox: 12 small residual CNNs, one per distortion family and band.

Tools 1-4 deblur, 5-8 denoise, 9-12 remove JPEG artefacts, each family from mild to severe; the two
milder tools of a family are :class:`SmallTool` (21,827 parameters), the two harder ones
:class:`LargeTool` (50,851). Every tool is residual (``out = x + net(x)``) with SAME zero padding.

Images are N x 3 x H x W float tensors, RGB in [0, 1], in their on-disk orientation (the authors'
released tools expect transposed patches; :meth:`Toolbox.from_official` transposes their kernels instead).

Tool outputs are NOT clipped to [0, 1]. The authors' system passes the raw residual output on and
measures PSNR on it: with the released weights, unclipped outputs reproduce the reference single-tool
and toolchain PSNRs to 0.005 dB, while clipping moves single-tool PSNRs by up to 0.29 dB and chains by
up to 0.1 dB. Outputs may therefore leave [0, 1] a little (by up to about 0.2 on the sample patches);
inputs are accepted within [-0.5, 1.5] so that such intermediate states can be fed back.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import nn

from restore_gym.official import OFFICIAL, converted_file
from restore_gym.records import load_torch_file, write_atomic
from restore_gym.tf_checkpoint import CheckpointError, read_checkpoint
from restore_gym.tool_nets import TOOL_CLASSES, LargeTool, SmallTool, count_macs, count_parameters

__all__ = [
    "ARCHITECTURE",
    "NUM_TOOLS",
    "TOOL_SPECS",
    "LargeTool",
    "SmallTool",
    "ToolSpec",
    "Toolbox",
    "atomic_torch_save",
    "build_tool",
    "count_macs",
    "count_parameters",
]

ARCHITECTURE = "rl-restore-toolbox-v1"
# Files in restore_gym/weights/.
PRETRAINED_FILES: dict[str, str] = {"plain": "toolbox.pt", "v2": "toolbox.pt", "v3": "toolbox-v3.pt",
                                    "v4": "toolbox-v4.pt", "joint": "toolbox-joint.pt"}
# What None and "shipped" name.
DEFAULT_VARIANT = "plain"
NUM_TOOLS = 12
# Inputs outside this range are almost certainly not [0, 1] images (e.g. uint8 values cast to float).
INPUT_RANGE_SLACK = 0.5

ToolIds = torch.Tensor | np.ndarray | Sequence[int]


def _architecture_costs(size: str) -> tuple[int, int]:
    with torch.device("meta"):
        tool = TOOL_CLASSES[size]()
    return count_parameters(tool), count_macs(tool)


@dataclass(frozen=True)
class ToolSpec:
    """One tool of the toolbox (``index`` is 0-based; the paper's tool number is ``index + 1``).

    ``band`` is the (low, high) range of the distortion the tool is trained for: Gaussian blur sigma,
    Gaussian noise sigma on the 0..255 scale, or JPEG quality. ``macs`` counts multiply-adds per 63x63 patch.
    """

    index: int
    name: str
    family: Literal["blur", "noise", "jpeg"]
    band: tuple[float, float]
    size: Literal["small", "large"]
    params: int
    macs: int


def _make_specs() -> tuple[ToolSpec, ...]:
    bands = {
        "blur": [(0.0, 1.25), (1.25, 2.5), (2.5, 3.75), (3.75, 5.0)],
        "noise": [(0.0, 12.5), (12.5, 25.0), (25.0, 37.5), (37.5, 50.0)],
        "jpeg": [(60.0, 100.0), (35.0, 60.0), (20.0, 35.0), (10.0, 20.0)],
    }
    prefixes = {"blur": "deblur", "noise": "denoise", "jpeg": "dejpeg"}
    costs = {size: _architecture_costs(size) for size in TOOL_CLASSES}
    specs = []
    for family, family_bands in bands.items():
        for level, band in enumerate(family_bands):
            size = "small" if level < 2 else "large"
            params, macs = costs[size]
            specs.append(ToolSpec(len(specs), f"{prefixes[family]}-{level + 1}", family, band, size, params, macs))
    return tuple(specs)


TOOL_SPECS: tuple[ToolSpec, ...] = _make_specs()


def build_tool(spec: ToolSpec) -> nn.Module:
    """A freshly initialised network with the architecture of ``spec`` (``SmallTool`` or ``LargeTool``)."""
    return TOOL_CLASSES[spec.size]()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (see :func:`restore_gym.records.write_atomic`)."""
    write_atomic(path, lambda handle: torch.save(obj, handle))


def _tool_ids_tensor(tool_ids: ToolIds, batch: int) -> torch.Tensor:
    """Validate tool ids for a batch of ``batch`` images; returns them as a CPU int64 tensor."""
    if isinstance(tool_ids, torch.Tensor):
        ids = tool_ids.detach().cpu()
    elif isinstance(tool_ids, (np.ndarray, Sequence)) and not isinstance(tool_ids, (str, bytes)):
        array = np.asarray(tool_ids)
        if array.size and array.dtype.kind not in "iu":
            raise TypeError(f"tool_ids must be integers 0..{NUM_TOOLS - 1}, got {tool_ids!r}")
        ids = torch.from_numpy(array.astype(np.int64))
    else:
        raise TypeError(f"tool_ids must be an int tensor, array or sequence with one tool (0..{NUM_TOOLS - 1}) "
                        f"per image, got {type(tool_ids).__name__}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"tool_ids must be integers 0..{NUM_TOOLS - 1}, got dtype {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"tool_ids must be 1-D with one tool per image, got shape {tuple(ids.shape)}")
    if ids.numel() != batch:
        raise ValueError(f"tool_ids has {ids.numel()} entries but the batch has {batch} images; give one per image")
    ids = ids.to(torch.int64)
    bad = ids[(ids < 0) | (ids >= NUM_TOOLS)]
    if bad.numel():
        raise ValueError(f"tool ids must be in 0..{NUM_TOOLS - 1} (tool 1..{NUM_TOOLS} of the paper is id 0.."
                         f"{NUM_TOOLS - 1}), got {sorted(set(bad.tolist()))}")
    return ids


def _check_images(x: Any) -> None:
    """Raise TypeError/ValueError unless ``x`` is an N x 3 x H x W float tensor with values near [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape N x 3 x H x W, got {type(x).__name__}; "
                        "convert arrays with torch.from_numpy(array).permute(0, 3, 1, 2)")
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D batch N x 3 x H x W, got shape {tuple(x.shape)}; "
                         "add a batch dimension with x.unsqueeze(0) for a single image")
    if x.shape[1] != 3:
        raise ValueError(f"expected 3 (RGB) channels in dimension 1 (N x 3 x H x W), got shape {tuple(x.shape)}; "
                         "channels-last batches need x.permute(0, 3, 1, 2)")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor with values in [0, 1], got dtype {x.dtype}; "
                        "convert uint8 images with x.float() / 255")
    if x.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if not (low >= -INPUT_RANGE_SLACK and high <= 1 + INPUT_RANGE_SLACK):
        raise ValueError(f"expected image values in [0, 1], got min {low:g} and max {high:g}; "
                         "uint8 images must be divided by 255")


class Toolbox(nn.Module):
    """The 12 tools, run per image on a batch; outputs are not clipped (see the module docstring).

    ``version`` counts joint-training rounds (0 for tools trained alone); ``metadata`` is a plain dict
    describing where the weights come from. Both are saved with the weights.
    """

    def __init__(self, version: int = 0, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.tools = nn.ModuleList(build_tool(spec) for spec in TOOL_SPECS)
        self.version = int(version)
        self.metadata: dict[str, Any] = dict(metadata or {})

    def forward(self, x: torch.Tensor, tool_ids: ToolIds) -> torch.Tensor:
        """Apply tool ``tool_ids[n]`` (0..11) to image ``x[n]``; differentiable, output not clipped.

        ``x`` is N x 3 x H x W float in [0, 1] on any device, any H x W. Each distinct tool runs once,
        on the sub-batch that chose it; results come back in the input order.
        """
        _check_images(x)
        ids = _tool_ids_tensor(tool_ids, x.shape[0])
        distinct = torch.unique(ids).tolist()
        if not distinct:
            return x.clone()
        if len(distinct) == 1:
            return self.tools[distinct[0]](x)
        indices = [torch.nonzero(ids == tool).squeeze(1) for tool in distinct]
        outputs = [self.tools[tool](x.index_select(0, idx.to(x.device))) for tool, idx in zip(distinct, indices)]
        order = torch.cat(indices)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel())
        return torch.cat(outputs).index_select(0, inverse.to(x.device))

    @overload
    def apply(self, x: torch.Tensor, tool_ids: ToolIds) -> torch.Tensor: ...

    @overload
    def apply(self, x: Callable[[nn.Module], None]) -> Toolbox: ...

    def apply(self, x: Any, tool_ids: ToolIds | None = None) -> Any:
        """:meth:`forward` under ``torch.inference_mode``, for rollouts.

        Called with a function only, this is ``nn.Module.apply`` (so module-wide utilities keep working).
        """
        if tool_ids is None and callable(x):
            return super().apply(x)
        if tool_ids is None:
            raise TypeError("Toolbox.apply(x, tool_ids) needs tool_ids, one tool (0..11) per image")
        with torch.inference_mode():
            return self.forward(x, tool_ids)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the weights: every tensor's name, dtype, shape and bytes, in key order. Results
        and caches are keyed by it, so they are valid for exactly these weights."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
            digest.update(data.numpy().tobytes())
        return digest.hexdigest()

    def run_tool(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Apply tool ``index`` (0..11) to every image of the batch ``x``; differentiable, output not clipped."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"tool index must be an int in 0..{NUM_TOOLS - 1}, got {index!r}")
        if not 0 <= index < NUM_TOOLS:
            raise ValueError(f"tool index must be in 0..{NUM_TOOLS - 1} (paper's tool {index + 1} does not exist)")
        _check_images(x)
        return self.tools[int(index)](x)

    @classmethod
    def from_official(cls, toolbox_dir: str | os.PathLike) -> Toolbox:
        """Load the authors' released TensorFlow tools (``toolbox_dir/tool01`` .. ``tool12`` bundles).

        Kernels go from HWIO to PyTorch's OIHW with their two spatial axes swapped, which is the same as
        transposing the image: the released tools expect transposed patches, ours take images as on disk.
        Raises :class:`CheckpointError` naming the file if a bundle is missing, corrupt or foreign.
        """
        toolbox = cls(metadata={
            "provenance": "RL-Restore official release (Yu et al., CVPR 2018, MIT licence), "
                          "converted from TensorFlow by Toolbox.from_official",
            "orientation": "kernels spatially transposed: tools take images in on-disk orientation",
        })
        for spec, tool in zip(TOOL_SPECS, toolbox.tools):
            prefix = Path(toolbox_dir) / f"tool{spec.index + 1:02d}"
            _load_tf_tool(tool, read_checkpoint(prefix), f"{prefix}.index")
        return toolbox

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, ``version``, ``metadata`` and the architecture tag to one .pt file, atomically."""
        atomic_torch_save(
            {
                "architecture": ARCHITECTURE,
                "version": self.version,
                "metadata": self.metadata,
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Toolbox:
        """Load a file written by :meth:`save`.

        Raises FileNotFoundError if it is missing and ValueError naming the file if it is damaged (see
        :func:`restore_gym.records.verify_torch_file`), not a toolbox file of this architecture (wrong tag,
        missing, unexpected or mis-shaped weights) or holds NaN or infinite weights.
        """
        path = Path(path)
        state = load_torch_file(path, "toolbox file")
        if not isinstance(state, dict) or not {"architecture", "version", "metadata", "state_dict"} <= state.keys():
            raise ValueError(f"{path} is not a toolbox file: expected a dict with architecture, version, metadata "
                             "and state_dict, as written by Toolbox.save")
        if state["architecture"] != ARCHITECTURE:
            raise ValueError(f"{path} holds architecture {state['architecture']!r}, expected {ARCHITECTURE!r}")
        if not isinstance(state["version"], int) or not isinstance(state["metadata"], dict):
            raise ValueError(f"{path}: version must be an int and metadata a dict, got "
                             f"{type(state['version']).__name__} and {type(state['metadata']).__name__}")
        toolbox = cls(version=state["version"], metadata=state["metadata"])
        _check_state_dict(toolbox.state_dict(), state["state_dict"], str(path))
        _check_finite(state["state_dict"], str(path))
        toolbox.load_state_dict(state["state_dict"])
        return toolbox.to(map_location)

    @classmethod
    def resolve(cls, spec: Toolbox | str | os.PathLike | None = None,
                map_location: str | torch.device = "cpu") -> Toolbox:
        """The toolbox a user names: None or ``"shipped"`` (the default shipped toolbox), a shipped variant
        (``"plain"``, ``"v2"``, ``"v3"``, ``"v4"``, ``"joint"``; see :meth:`pretrained`), ``"official"`` (the
        authors' tools once converted, :mod:`restore_gym.official`), a file written by :meth:`save` (a path; write
        ``./joint`` for a file of that name), or a :class:`Toolbox` (moved to ``map_location``)."""
        if isinstance(spec, Toolbox):
            return spec.to(map_location)
        if spec is None or spec == "shipped":
            return cls.pretrained(map_location, variant=DEFAULT_VARIANT)
        if isinstance(spec, str) and spec in PRETRAINED_FILES:
            return cls.pretrained(map_location, variant=spec)
        if spec == OFFICIAL:
            return cls.load(converted_file("toolbox"), map_location)
        if not isinstance(spec, (str, os.PathLike)):
            raise TypeError(f"a toolbox is named by None, 'shipped', a variant ({', '.join(PRETRAINED_FILES)}), "
                            f"'official', a file path or a Toolbox, got {type(spec).__name__}")
        return cls.load(spec, map_location)

    @classmethod
    def pretrained(cls, map_location: str | torch.device = "cpu", variant: str = DEFAULT_VARIANT) -> Toolbox:
        """A toolbox shipped with the package: ``"v4"`` (``weights/toolbox-v4.pt``, v3's draw under the PSNR loss,
        which keeps tools closer to the identity on what they are not for; a candidate, not yet the toolbox of an
        environment version), ``"v3"`` (``weights/toolbox-v3.pt``, the tools trained on the inputs
        the MDP hands them; not yet the toolbox of an environment version), ``"v2"`` or its older name ``"plain"``
        (``weights/toolbox.pt``, the tools trained on their own distortion with slight noise and JPEG; what
        ``RLRestore-v0`` uses) or ``"joint"`` (``weights/toolbox-joint.pt``, the v2 tools fine-tuned on the
        shipped agent's toolchains, :mod:`restore_gym.joint`)."""
        if variant not in PRETRAINED_FILES:
            raise ValueError(f"unknown toolbox variant {variant!r}; choose one of {', '.join(PRETRAINED_FILES)}")
        resource = importlib.resources.files("restore_gym") / "weights" / PRETRAINED_FILES[variant]
        if not resource.is_file():
            raise FileNotFoundError(
                f"the {variant} pretrained toolbox (restore_gym/weights/{PRETRAINED_FILES[variant]}) is not "
                "shipped; train one with `python -m restore_gym.train_tools` and use Toolbox.load, or "
                "Toolbox.from_official for the authors' released weights"
            )
        with importlib.resources.as_file(resource) as path:
            return cls.load(path, map_location)


def _check_state_dict(expected: dict[str, torch.Tensor], found: Any, where: str) -> None:
    """ValueError naming ``where`` unless ``found`` has exactly the keys and shapes of ``expected``."""
    if not isinstance(found, dict):
        raise ValueError(f"{where}: state_dict is a {type(found).__name__}, expected a dict of tensors")
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    shapes = sorted(
        f"{key}: {tuple(found[key].shape) if isinstance(found[key], torch.Tensor) else type(found[key]).__name__}"
        f" instead of {tuple(expected[key].shape)}"
        for key in expected.keys() & found.keys()
        if not isinstance(found[key], torch.Tensor) or found[key].shape != expected[key].shape
    )
    problems = [f"{label} {items[:5]}{' ...' if len(items) > 5 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
                if items]
    if problems:
        raise ValueError(f"{where} does not match the toolbox architecture {ARCHITECTURE!r}: {'; '.join(problems)}")


def _check_finite(state_dict: dict[str, torch.Tensor], where: str) -> None:
    """ValueError naming ``where`` and the tools unless every weight of the toolbox ``state_dict`` is finite."""
    bad = [key for key, value in state_dict.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        tools = sorted({int(key.split(".")[1]) for key in bad})
        named = ", ".join(f"{i + 1} ({TOOL_SPECS[i].name})" for i in tools)
        raise ValueError(f"{where} holds NaN or infinite weights in tool(s) {named} (e.g. {bad[0]}): the file is "
                         "damaged or its training diverged; retrain those tools or use another toolbox file")


def _load_tf_tool(tool: nn.Module, arrays: dict[str, np.ndarray], where: str) -> None:
    """Copy TensorFlow ``<scope>/weights`` (HWIO) and ``<scope>/biases`` into ``tool``'s convolutions."""
    convs = {name: m for name, m in tool.named_modules() if isinstance(m, nn.Conv2d)}
    expected = {f"{name}/{kind}" for name in convs for kind in ("weights", "biases")}
    if expected != arrays.keys():
        raise CheckpointError(f"{where} does not hold a {type(tool).__name__} of the RL-Restore toolbox: missing "
                              f"{sorted(expected - arrays.keys())}, unexpected {sorted(arrays.keys() - expected)}")
    with torch.no_grad():
        for name, conv in convs.items():
            weights, biases = arrays[f"{name}/weights"], arrays[f"{name}/biases"]
            # HWIO -> O, I, W, H: PyTorch's OIHW with the spatial axes swapped.
            kernel = torch.from_numpy(np.ascontiguousarray(weights.transpose(3, 2, 1, 0)))
            if kernel.shape != conv.weight.shape or biases.shape != tuple(conv.bias.shape):
                raise CheckpointError(f"{where}: {name} has kernel {weights.shape} (HWIO) and bias {biases.shape}, "
                                      f"expected a {type(tool).__name__} layer of kernel "
                                      f"{tuple(conv.weight.permute(2, 3, 1, 0).shape)} and bias "
                                      f"{tuple(conv.bias.shape)}")
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(biases))
