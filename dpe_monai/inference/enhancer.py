"""The one fast inference path shared by the CLI, the bundle and MONAI Label."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import SliceInferer, SlidingWindowInferer

from dpe_monai.precision import autocast, resolve_amp_dtype
from dpe_monai.transforms.preprocess import grey_mask

__all__ = ["Enhancer"]

logger = logging.getLogger(__name__)


class Enhancer:
    """Run an enhancement network on images of any size, on CPU or CUDA, at the fastest safe precision.

    ``Enhancer(x)`` takes ``(B, C, H, W)`` tensors in [0, 1] (the network's documented range) and returns the same
    shape in [0, 1]. ``C`` may be the network's ``in_channels`` or 1 for a 3-channel network (the grey image is
    replicated to RGB and the output averaged back to one channel); an RGB input whose three channels are equal
    (a grey image already replicated) also gets grey output. Images larger than ``tile_size`` on a side go
    through MONAI's ``SlidingWindowInferer`` with Gaussian blending (no seams, bounded memory). 5-D input
    ``(B, C, H, W, D)`` is enhanced slice by slice along spatial axis ``axis`` (0, 1 or 2).

    ``precision="auto"`` follows the one precision policy (:mod:`dpe_monai.precision`: bf16 only where the hardware
    runs it natively **and** it measures faster here) and adds an accuracy check: a probe image enhanced in bf16
    must match fp32 within ``tolerance`` (max abs difference, [0, 1] units); otherwise fp32. The decision is kept
    in ``self.precision`` and ``self.precision_check``.

    Args:
        network: a 2-D enhancement network (e.g. ``DPENet``); each call runs it in eval mode and gives it back in
            the mode it had (a network being trained stays in training mode). Outputs are ordinary tensors (not
            ``torch.inference_mode`` ones), so they may enter a graph that is back-propagated.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device`` or None (CUDA when available).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        tile_size: sliding-window tile side; larger images are tiled.
        overlap: tile overlap fraction.
        tolerance: largest max-abs difference to fp32 that ``"auto"`` accepts.
        channels_last: use channels-last memory format (faster convolutions on CPU and CUDA).
        axis: slicing axis for 3-D volumes.
        progress: show a progress bar over the tiles of a large image and the slices of a volume.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tile_size: int = 1024,
        overlap: float = 0.25,
        tolerance: float = 2e-2,
        channels_last: bool = True,
        axis: int = 2,
        progress: bool = False,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network = network.to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.network.to(memory_format=torch.channels_last)
        self.in_channels = int(getattr(network, "in_channels", 3))
        self.tile_size = int(tile_size)
        self.axis = int(axis)
        self.tolerance = float(tolerance)
        self.overlap = float(overlap)
        self.progress = bool(progress)
        self.inferer = SlidingWindowInferer(
            roi_size=(self.tile_size, self.tile_size),
            sw_batch_size=1,
            overlap=overlap,
            mode="gaussian",
            padding_mode="replicate",
            progress=self.progress,
        )
        self.precision_check: dict[str, Any] = {}
        self.precision = self._choose_precision(precision)

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """The network in eval mode for the block, then back in the mode it had."""
        modes = [m.training for m in self.network.modules()]
        self.network.eval()
        try:
            yield
        finally:
            for module, mode in zip(self.network.modules(), modes):
                module.training = mode

    # ------------------------------------------------------------------ precision
    def _dtype(self, precision: str) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def _choose_precision(self, precision: str) -> str:
        precision = precision.lower()
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 inference needs CUDA; use bf16 or fp32 on CPU")
        if precision != "auto":
            return precision
        dtype, record = resolve_amp_dtype("auto", self.device)  # native bf16 and measured faster, or not at all
        if dtype != torch.bfloat16:
            self.precision_check = {"candidate": "bf16", "accepted": False, "policy": record}
            return "fp32"
        gen = torch.Generator().manual_seed(0)
        probe = torch.rand(1, self.in_channels, 64, 64, generator=gen).to(self.device)
        with self._evaluating():
            ref = self._run(probe, None)
            diff = float((self._run(probe, torch.bfloat16) - ref).abs().max())
        accepted = diff <= self.tolerance
        self.precision_check = {
            "candidate": "bf16",
            "policy": record,
            "max_abs_diff": diff,
            "tolerance": self.tolerance,
            "accepted": accepted,
        }
        return "bf16" if accepted else "fp32"

    # ------------------------------------------------------------------ running
    #: callers that know the file pass the route flag ``relative=`` (see :meth:`__call__`)
    uses_convention = True

    def global_params(self, x: torch.Tensor, relative: bool | None = None) -> torch.Tensor | None:
        """Whole-image tone-map parameters for networks with a global branch (``network.estimate``), else None.

        Args:
            x: ``(B, C, H, W)`` images or ``(B, C, H, W, D)`` volumes in [0, 1], C = 1 or ``in_channels``. They are
                estimated once, in fp32, on the whole input, so tiles and slices share one tone map (no seams, no
                slice-to-slice flicker).
            relative: the image is a scan (:func:`~dpe_monai.contract.is_scan`: grey, or windowed relative to
                itself) rather than an 8-bit colour photograph; None when unknown
                (see :class:`~dpe_monai.networks.GlobalIntensity`).
        """
        estimate = getattr(self.network, "estimate", None)
        if estimate is None:
            return None
        x = x.to(self.device, torch.float32)
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, *x.shape[2:])
        flag = None if relative is None else torch.full((x.shape[0],), float(relative), device=self.device)
        with self._evaluating(), torch.inference_mode():
            y = estimate(x, relative=flag).float()
        return y.clone()  # an ordinary tensor

    def _inline_estimate(self, x: torch.Tensor) -> bool:
        """True when one forward call may estimate the tone map itself: a network with a global branch, an image
        enhanced in one piece, in fp32 (the estimate is always fp32). It computes what ``estimate`` + forward
        compute, and a network that denoises to estimate (the scan path) then denoises once, not twice."""
        untiled = max(x.shape[-2:]) <= self.tile_size
        return hasattr(self.network, "estimate") and untiled and self._dtype(self.precision) is None

    def _run(
        self,
        x: torch.Tensor,
        dtype: torch.dtype | None,
        params: torch.Tensor | None = None,
        relative: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        kwargs: dict[str, torch.Tensor] = {} if params is None else {"params": params.to(self.device)}
        if relative is not None:
            kwargs["relative"] = relative
        with torch.inference_mode(), autocast(self.device, dtype):
            if max(x.shape[-2:]) > self.tile_size:
                y = self.inferer(x, self.network, **kwargs)
            else:
                y = self.network(x, **kwargs)
            return y.float().clamp(0.0, 1.0).contiguous()

    def _enhance_2d(
        self, x: torch.Tensor, params: torch.Tensor | None = None, relative: bool | None = None
    ) -> torch.Tensor:
        c = x.shape[1]
        flag = None
        if params is None and self._inline_estimate(x):
            flag = None if relative is None else torch.full((x.shape[0],), float(relative), device=self.device)
        elif params is None:
            params = self.global_params(x, relative)
        if c == self.in_channels:
            y = self._run(x, self._dtype(self.precision), params, flag)
            if c == 3:  # grey in, grey out: images whose three channels are equal get the channel mean back
                grey = grey_mask(x)
                if bool(grey.any()):
                    mean = y.mean(dim=1, keepdim=True).expand_as(y)
                    y = torch.where(grey.view(-1, 1, *([1] * (y.ndim - 2))).to(y.device), mean, y)
            return y
        if c == 1 and self.in_channels == 3:
            y = self._run(x.expand(-1, 3, -1, -1), self._dtype(self.precision), params, flag)
            return y.mean(dim=1, keepdim=True)
        raise ValueError(f"the network takes {self.in_channels} channels (or 1 if it takes 3); got {c}")

    def __call__(self, x: torch.Tensor, slice_batch: int = 8, relative: bool | None = None) -> torch.Tensor:
        """Enhance ``x``: ``(B, C, H, W)`` or ``(B, C, H, W, D)`` in [0, 1]; returns the same shape, float32, on CPU.

        ``relative``: the route flag of ``x`` (True: a scan, :func:`~dpe_monai.contract.is_scan`: a grey image or
        one the contract windowed relative to itself; False: an 8-bit colour photograph; None: unknown); used by
        networks with a global branch. ``slice_batch``: slices of a volume enhanced at once.

        Raises:
            ValueError: ``x`` is not floating point, holds NaN/inf, or leaves [0, 1] (map a file's values with
                :func:`dpe_monai.contract.to_unit` or ``IntensityWindow`` first; the CLI and the bundle do).
        """
        x = torch.as_tensor(x)
        _check_unit(x)
        if x.ndim == 4 and min(x.shape[2:]) < 2:
            raise ValueError(f"image is too small to enhance (spatial size {tuple(x.shape[2:])})")
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, H, W) or (B, C, H, W, D), got shape {tuple(x.shape)}")
        with self._evaluating():
            if x.ndim == 4:
                y = self._enhance_2d(x, relative=relative).cpu()
            else:
                y = torch.cat([self._enhance_volume(x[i : i + 1], slice_batch, relative) for i in range(x.shape[0])])
        return y.clone()  # outside inference mode: an ordinary tensor the caller may use in autograd

    def _enhance_volume(self, x: torch.Tensor, slice_batch: int, relative: bool | None = None) -> torch.Tensor:
        """One ``(1, C, H, W, D)`` volume, slice by slice along ``self.axis`` with MONAI's ``SliceInferer``.

        A global-local network gets one tone map for the whole volume (no slice-to-slice flicker).
        """
        spatial = [s for i, s in enumerate(x.shape[2:]) if i != self.axis]
        if min(spatial) < 2:
            raise ValueError(
                f"slices along axis {self.axis} are {spatial[0]}x{spatial[1]} pixels, too small to enhance; "
                f"slice along another axis (volume {tuple(x.shape[2:])})"
            )
        params = self.global_params(x.movedim(2 + self.axis, -1), relative)
        roi = [min(self.tile_size, s) for s in spatial]
        tiled = any(r < s for r, s in zip(roi, spatial))
        inferer = SliceInferer(
            spatial_dim=self.axis,
            roi_size=roi,
            sw_batch_size=slice_batch,
            overlap=self.overlap if tiled else 0.0,
            mode="gaussian" if tiled else "constant",
            padding_mode="replicate",
            progress=self.progress,
            sw_device=self.device,
            device=torch.device("cpu"),
        )
        with torch.inference_mode():  # the inferer blends slices in place; the slices are inference tensors
            return inferer(x, lambda s: self._enhance_2d(s, params)).cpu()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | os.PathLike,
        weights: str | os.PathLike | None = None,
        config: str | os.PathLike = "inference.json",
        **kwargs: Any,
    ) -> Enhancer:
        """Build from a MONAI bundle: ``network_def`` from ``configs/inference.json`` and ``models/model.pt``.

        Args:
            bundle_dir: the bundle folder.
            weights: checkpoint path (default ``<bundle_dir>/models/model.pt``); a plain state dict or a dict
                with a ``"model"``/``"network"`` entry.
            config: the bundle config whose ``network_def`` the weights belong to: a file in
                ``<bundle_dir>/configs`` or a path (e.g. ``task_driven.json`` for a task-driven fine-tune, whose
                network has no scan path).
            kwargs: forwarded to :class:`Enhancer`.
        """
        from monai.bundle import ConfigParser

        bundle_dir = Path(bundle_dir)
        parser = ConfigParser()
        parser.read_config(str(bundle_config(bundle_dir, config)))
        parser["bundle_root"] = str(bundle_dir)
        network = parser.get_parsed_content("network_def")
        path = Path(weights) if weights is not None else bundle_dir / "models" / "model.pt"
        network = load_network(network, path)
        return cls(network, **kwargs)


def _check_unit(x: torch.Tensor) -> None:
    """Refuse what the networks would turn into saturated or NaN images without a word: integer data, NaN/inf and
    values outside [0, 1] (half a 16-bit level of rounding slack)."""
    if not torch.is_floating_point(x):
        raise ValueError(f"expected a floating-point image in [0, 1], got {x.dtype} (divide 8-bit data by 255)")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"image holds {bad} NaN/inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-5 or hi > 1.0 + 1e-5:
        raise ValueError(
            f"image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]; map them with dpe_monai.contract.to_unit "
            "or dpe_monai.transforms.IntensityWindow first"
        )


def bundle_config(bundle_dir: str | os.PathLike, config: str | os.PathLike = "inference.json") -> Path:
    """``config`` as a path: itself when it names a file, else ``<bundle_dir>/configs/<config>``."""
    path = Path(config)
    return path if path.is_file() else Path(bundle_dir) / "configs" / path


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a generator state dict saved by the bundle (``{"model": sd}``), by ``torch.save(sd)``, or fp16-packed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model weights at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "network", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    return {k.removeprefix("module."): v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_network(network: torch.nn.Module, path: str | os.PathLike, exclude: Sequence[str] = ()) -> torch.nn.Module:
    """Load generator weights from ``path`` (see :func:`load_weights`) into ``network``, strictly, and return it.

    ``exclude``: key prefixes of ``path``'s weights to leave out (e.g. ``("refiner.",)``: a network built without
    the shipped scan refiner, such as the task-driven fine-tune's, takes the rest of the shipped checkpoint)."""
    state = load_weights(path)
    if exclude:
        state = {k: v for k, v in state.items() if not k.startswith(tuple(exclude))}
    expected = set(network.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:

        def parts(keys: list[str]) -> str:
            return ", ".join(sorted({k.split(".")[0] for k in keys}))

        hint = ""
        if any(k.startswith(("refiner.", "gate.")) for k in missing):
            hint = (
                "; a checkpoint trained by train.json or task_driven.json has no scan-path refiner or clean gate: "
                "build the network it was trained as (bundle: --network_def#prefilter None --network_def#scan_refiner "
                "False --network_def#clean_gate False --network_def#colour_restore body; CLI: --network-config with "
                "its training config)"
            )
        raise ValueError(
            f"{path} does not fit the network {type(network).__name__}: "
            + (f"it lacks {len(missing)} weights ({parts(missing)})" if missing else "")
            + (", " if missing and unexpected else "")
            + (f"it has {len(unexpected)} the network does not ({parts(unexpected)})" if unexpected else "")
            + hint
        )
    own = network.state_dict()
    shapes = [k for k in sorted(state) if tuple(state[k].shape) != tuple(own[k].shape)]
    if shapes:  # same names, other shapes: a network built with other channels
        first = shapes[0]
        raise ValueError(
            f"{path} does not fit the network {type(network).__name__}: {len(shapes)} weights have other shapes "
            f"({first}: {tuple(state[first].shape)} in the file, {tuple(own[first].shape)} in the network); build "
            "the network with the options it was trained with"
        )
    network.load_state_dict(state)
    return network


class EnhancerInferer:
    """A MONAI-style inferer (``inferer(inputs, network)``) that runs through :class:`Enhancer`.

    Lets MONAI evaluators and MONAI Label use the same tiled, precision-checked path as the CLI. The
    :class:`Enhancer` is built on first use for each network and cached.

    Args:
        kwargs: forwarded to :class:`Enhancer` (``precision``, ``tile_size``, ``overlap``, ``axis``...).
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self._cache: dict[int, Enhancer] = {}

    def __call__(
        self,
        inputs: torch.Tensor,
        network: torch.nn.Module,
        *args: Any,
        relative: bool | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Enhance ``inputs`` with ``network``; ``relative``: the intensity contract's flag (see :class:`Enhancer`),
        a bool or a ``(B,)`` tensor (``PairedBatch(relative_key=...)``), one value per image."""
        key = id(network)
        if key not in self._cache:
            device = inputs.device if inputs.device.type != "cpu" else next(network.parameters()).device
            self._cache[key] = Enhancer(network, device=device, **self.kwargs)
        enhancer = self._cache[key]
        if isinstance(relative, torch.Tensor):
            flags = [bool(v > 0.5) for v in relative.reshape(-1).tolist()]
            if len(set(flags)) > 1:  # a mixed batch: image by image
                return torch.cat([enhancer(inputs[i : i + 1], relative=f) for i, f in enumerate(flags)])
            relative = flags[0] if flags else None
        return enhancer(inputs, relative=relative).to(inputs.device)
