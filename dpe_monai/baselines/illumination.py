"""Illumination-map baselines of the paper's Table II, written from their publications: LIME and DUAL.

Both estimate an illumination map ``T`` from the image, refine it with an edge-aware smoothness prior solved as
one sparse linear system (``scipy.sparse.linalg.spsolve``), and divide the image by ``T ** gamma`` (Retinex).

* **LIME** (Guo, Li and Ling, "LIME: low-light image enhancement via illumination map estimation", IEEE TIP 2017;
  ACM MM 2016): initial map ``T_hat = max_c I_c``; the refined map minimises
  ``sum_x (T - T_hat)^2 + alpha * sum_d W_d(x) (d_d T(x))^2 / (|d_d T_hat(x)| + eps)`` (the paper's sped-up
  solver, weighting strategy III: ``W_d = 1 / (|G_sigma * d_d T_hat| + eps)``); output ``I / T^gamma``.
  LIME's optional BM3D denoising of the result is not applied (no BM3D here; see REFERENCE.md section 5).
* **DUAL** (Zhang, Nie and Zheng, "Dual illumination estimation for robust exposure correction", Computer
  Graphics Forum 2019): the same estimate run on the image (under-exposure correction) and on its inverse
  ``1 - I`` (over-exposure correction, ``1 - LIME(1 - I)``), then the input and the two corrections are merged by
  Mertens-style multi-exposure fusion (weights: contrast, saturation, well-exposedness; Laplacian pyramid blend).

Defaults follow the papers: LIME ``alpha=0.15, gamma=0.8, sigma=2``; DUAL ``alpha=0.15, gamma=0.6, sigma=3``.
Images are ``(H, W)`` grey or ``(H, W, 3)`` RGB float arrays in [0, 1]; outputs have the same shape in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

__all__ = ["refine_illumination", "lime", "dual", "exposure_fusion"]


def _smoothness_weights(t_hat: np.ndarray, axis: int, sigma: float, eps: float) -> np.ndarray:
    """Per-pixel weight of the squared forward difference along ``axis`` (LIME weighting strategy III).

    ``1 / ((|G_sigma * d T_hat| + eps) * (|d T_hat| + eps))``; the last row/column (no forward neighbour) is 0.
    """
    grad = np.diff(t_hat, axis=axis, append=np.take(t_hat, [-1], axis=axis))
    smoothed = ndimage.gaussian_filter(grad, sigma) if sigma > 0 else grad
    weights = 1.0 / ((np.abs(smoothed) + eps) * (np.abs(grad) + eps))
    last = [slice(None)] * t_hat.ndim
    last[axis] = slice(-1, None)
    weights[tuple(last)] = 0.0
    return weights


def refine_illumination(t_hat: np.ndarray, alpha: float = 0.15, sigma: float = 2.0, eps: float = 1e-3) -> np.ndarray:
    """Edge-aware smoothing of an initial illumination map by one sparse solve.

    Solves ``(I + alpha * sum_d D_d^T diag(w_d) D_d) t = t_hat`` with forward differences ``D_d`` along rows and
    columns and weights from :func:`_smoothness_weights`. The matrix is symmetric positive definite and
    five-diagonal in the flattened image.

    Args:
        t_hat: ``(H, W)`` initial map.
        alpha: smoothness strength.
        sigma: Gaussian sigma of the weight's gradient smoothing (0 = LIME strategy II).
        eps: small constant of the weights.

    Returns:
        ``(H, W)`` refined map (float64).
    """
    h, w = t_hat.shape
    n = h * w
    wv = alpha * _smoothness_weights(t_hat, 0, sigma, eps).ravel()  # edge (i, i + w)
    wh = alpha * _smoothness_weights(t_hat, 1, sigma, eps).ravel()  # edge (i, i + 1)
    diag = 1.0 + wv + wh + np.concatenate([np.zeros(w), wv[:-w]]) + np.concatenate([[0.0], wh[:-1]])
    matrix = sparse.diags([diag, -wh[:-1], -wh[:-1], -wv[:-w], -wv[:-w]], [0, 1, -1, w, -w], shape=(n, n), format="csc")
    return np.asarray(spsolve(matrix, t_hat.ravel().astype(np.float64))).reshape(h, w)


def _grey_or_max(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else img.max(axis=-1)


def _correct_underexposure(img: np.ndarray, alpha: float, gamma: float, sigma: float, eps: float) -> np.ndarray:
    """``img / T^gamma`` with ``T`` the refined max-channel illumination map."""
    t = refine_illumination(_grey_or_max(img), alpha=alpha, sigma=sigma, eps=eps)
    t = np.clip(t, eps, 1.0) ** gamma
    return np.clip(img / (t if img.ndim == 2 else t[..., None]), 0.0, 1.0)


def lime(img: np.ndarray, alpha: float = 0.15, gamma: float = 0.8, sigma: float = 2.0, eps: float = 1e-3) -> np.ndarray:
    """LIME low-light enhancement (sped-up solver, strategy III weights, no denoising).

    Args:
        img: ``(H, W)`` or ``(H, W, 3)`` in [0, 1].
        alpha: smoothness strength of the illumination map.
        gamma: gamma applied to the refined map before the division.
        sigma: Gaussian sigma of the weights.
        eps: small constant.
    """
    return _correct_underexposure(np.asarray(img, np.float64), alpha, gamma, sigma, eps)


# ----------------------------------------------------------------------------------------- exposure fusion
def _reduce(x: np.ndarray) -> np.ndarray:
    """Blur and halve the spatial size (first two axes)."""
    sig = (1.0, 1.0) + (0.0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(x, sig, mode="reflect")[::2, ::2]


def _expand(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear upsampling of the first two axes to ``shape[:2]``."""
    factors = (shape[0] / x.shape[0], shape[1] / x.shape[1]) + (1.0,) * (x.ndim - 2)
    out = ndimage.zoom(x, factors, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def _levels(h: int, w: int) -> int:
    return max(1, int(np.floor(np.log2(max(min(h, w), 2)))) - 2)


def exposure_fusion(
    images: list[np.ndarray], w_contrast: float = 1.0, w_saturation: float = 1.0, w_exposed: float = 1.0
) -> np.ndarray:
    """Mertens-style fusion of differently exposed versions of one image (Laplacian pyramid blend).

    Per-pixel weights: contrast ``|Laplacian(grey)|``, saturation (std over RGB; not used for grey images),
    well-exposedness ``prod_c exp(-(I_c - 0.5)^2 / 0.08)``, each raised to its exponent, normalised over the images.

    Args:
        images: arrays of one shape, ``(H, W)`` or ``(H, W, 3)``, in [0, 1].
        w_contrast: exponent of the contrast weight.
        w_saturation: exponent of the saturation weight.
        w_exposed: exponent of the well-exposedness weight.
    """
    weights = []
    for im in images:
        grey = im if im.ndim == 2 else im.mean(axis=-1)
        wgt = np.abs(ndimage.laplace(grey)) ** w_contrast
        exposed = np.exp(-((im - 0.5) ** 2) / (2 * 0.2**2))
        wgt = wgt * (exposed if im.ndim == 2 else exposed.prod(axis=-1)) ** w_exposed
        if im.ndim == 3:
            wgt = wgt * im.std(axis=-1) ** w_saturation
        weights.append(wgt + 1e-12)
    total = np.sum(weights, axis=0)
    weights = [w / total for w in weights]
    n_levels = _levels(*images[0].shape[:2])
    fused: list[np.ndarray] | None = None
    for im, wgt in zip(images, weights):
        gauss_w, lap = [wgt], []
        cur = im
        for _ in range(n_levels):
            down = _reduce(cur)
            lap.append(cur - _expand(down, cur.shape))
            cur = down
            gauss_w.append(_reduce(gauss_w[-1]))
        lap.append(cur)
        blended = [lvl * (g if lvl.ndim == 2 else g[..., None]) for lvl, g in zip(lap, gauss_w)]
        fused = blended if fused is None else [a + b for a, b in zip(fused, blended)]
    assert fused is not None
    out = fused[-1]
    for lvl in reversed(fused[:-1]):
        out = lvl + _expand(out, lvl.shape)
    return np.clip(out, 0.0, 1.0)


def dual(img: np.ndarray, alpha: float = 0.15, gamma: float = 0.6, sigma: float = 3.0, eps: float = 1e-3) -> np.ndarray:
    """DUAL exposure correction: fuse the input with its under- and over-exposure corrections.

    Args:
        img: ``(H, W)`` or ``(H, W, 3)`` in [0, 1].
        alpha: smoothness strength of both illumination maps.
        gamma: gamma of both maps.
        sigma: Gaussian sigma of the weights.
        eps: small constant.
    """
    img = np.asarray(img, np.float64)
    under = _correct_underexposure(img, alpha, gamma, sigma, eps)
    over = 1.0 - _correct_underexposure(1.0 - img, alpha, gamma, sigma, eps)
    return exposure_fusion([img, under, over])
