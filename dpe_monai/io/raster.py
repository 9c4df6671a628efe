"""PNG / JPEG / BMP (Pillow) and TIFF (tifffile, 2-D images and multi-page stacks) at the original bit depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from dpe_monai.io.formats import RASTER_SUFFIXES, UNWRITABLE_LAYOUTS
from dpe_monai.io.image import BadImageError, NativeImage

__all__ = ["RASTER_SUFFIXES", "read_raster", "write_lossless", "write_raster"]

_PIL_OK = {"L": np.uint8, "RGB": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int32}
#: Pillow modes decoded to grey/RGB when reading is all that is asked (see ``UNWRITABLE_LAYOUTS``).
_PIL_DECODE = {"P": "RGB", "PA": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "1": "L"}
#: grey or colour plus an alpha channel: the colour is enhanced, the alpha carried through unchanged
_PIL_ALPHA = ("LA", "RGBA")


def _refuse_or_note(path: Path, layout: str, strict: bool, info: dict) -> None:
    """The layout policy: refuse an unwritable layout when ``strict``, else note why the result is not writable."""
    if strict:
        raise BadImageError(path, UNWRITABLE_LAYOUTS[layout])
    info["unwritable"] = UNWRITABLE_LAYOUTS[layout]


def _png_header(path: Path) -> tuple[int, int] | None:
    """``(bit_depth, colour_type)`` from a PNG's IHDR chunk, or None when the file has no PNG signature."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    return (head[24], head[25]) if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 else None


def _read_pil(path: Path, kind: str, strict: bool) -> tuple[np.ndarray, dict]:
    """PNG/JPEG/BMP -> ``(rows, cols[, 3])`` samples and writer info."""
    if kind == "png" and _png_header(path) in ((16, 2), (16, 4), (16, 6)):
        why = "16-bit colour or grey+alpha PNG cannot be read at full depth by Pillow; save it as 16-bit TIFF"
        raise BadImageError(path, why)
    info: dict = {}
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in _PIL_ALPHA:  # the alpha rides along in info and is written back (write_raster)
                full = np.asarray(img)
                info["alpha"] = np.ascontiguousarray(full[..., -1])
                img = img.convert(mode[:-1])
            elif mode in _PIL_DECODE:
                _refuse_or_note(path, mode, strict, info)
                target = _PIL_DECODE[mode]
                if mode == "P" and "transparency" not in img.info:
                    palette = img.getpalette() or []
                    grey = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
                    target = "L" if grey else "RGB"
                img = img.convert(target)
            elif mode not in _PIL_OK:
                raise BadImageError(path, f"unsupported image mode {mode!r}")
            arr = np.asarray(img)
            info.update(mode=img.mode, format=img.format or kind.upper())
            if "dpi" in img.info:  # pixel size (PNG pHYs, JPEG JFIF, BMP): a micrograph's scale
                info["dpi"] = tuple(float(v) for v in img.info["dpi"])
            info["keep"] = _kept_metadata(img)
    except BadImageError:
        raise
    except UnidentifiedImageError as e:
        raise BadImageError(path, f"not a readable {kind.upper()} image (contents are not a known image format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(path, f"not a readable {kind.upper()} image ({e})") from e
    if info["mode"] == "I":  # Pillow opens some 16-bit PNGs as 32-bit integers
        arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() <= 65535 else arr
    return (arr if arr.ndim == 2 else np.moveaxis(arr, -1, 0)), info


def _kept_metadata(img: Image.Image) -> dict:
    """What a PNG/JPEG result keeps besides pixels and dpi: EXIF (e.g. a photograph's orientation), the ICC colour
    profile, and a PNG's text chunks, gamma and single transparent value (tRNS of a grey or RGB image)."""
    keep: dict = {k: img.info[k] for k in ("exif", "icc_profile") if img.info.get(k)}
    if img.format == "PNG":
        text = {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
        if text:
            keep["text"] = text
        if "gamma" in img.info:
            keep["gamma"] = float(img.info["gamma"])
        if img.mode in ("L", "RGB", "I", "I;16") and isinstance(img.info.get("transparency"), (int, tuple)):
            keep["transparency"] = img.info["transparency"]
    return keep


def _save_kwargs(fmt: str, keep: dict) -> dict:
    """Pillow ``save`` arguments that write :func:`_kept_metadata` back in ``fmt``."""
    kwargs = {k: keep[k] for k in ("exif", "icc_profile") if k in keep and fmt in ("PNG", "JPEG")}
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        chunks = PngInfo()
        for key, value in keep.get("text", {}).items():
            chunks.add_text(key, value)
        if "gamma" in keep:
            chunks.add(b"gAMA", round(keep["gamma"] * 100000).to_bytes(4, "big"))
        kwargs["pnginfo"] = chunks
        if "transparency" in keep:
            kwargs["transparency"] = keep["transparency"]
    return kwargs


def _keep_transparent(data: np.ndarray, source: np.ndarray, key: int | tuple) -> np.ndarray:
    """``data`` ``(C, ...)`` with the source's transparent pixels (those at the PNG's tRNS value ``key``) put back
    at it, and any other pixel the enhancement moved onto it nudged off by one level: the same pixels stay clear."""
    k = np.asarray(key if isinstance(key, tuple) else (key,) * data.shape[0], dtype=np.int64)[:, None]
    flat, src = data.reshape(data.shape[0], -1).astype(np.int64), source.reshape(source.shape[0], -1)
    clear = np.all(src == k, axis=0)
    hit = np.all(flat == k, axis=0) & ~clear
    flat[0, hit] += np.where(k[0] > 0, -1, 1)
    flat[:, clear] = k
    return flat.reshape(data.shape).astype(data.dtype)


#: lossless TIFF compressions a result keeps (TIFF tag value -> tifffile's name); imagecodecs decodes and encodes them
_LOSSLESS_TIFF = {5: "lzw", 8: "zlib", 32946: "zlib", 32773: "packbits", 50000: "zstd", 34925: "lzma"}


def _tiff_tags(tif: tifffile.TiffFile) -> dict:
    """What a TIFF result keeps of its source: pixel size (resolution and unit), the description, or an ImageJ file's
    metadata (spacing, unit) written as ImageJ again, the sample layout (planar configuration) and a lossless
    compression (LZW, deflate, PackBits, Zstandard, LZMA)."""
    page = tif.pages[0]
    tags: dict = {}
    if int(page.compression) in _LOSSLESS_TIFF:  # kept; lossy (JPEG) sources are written uncompressed, as DICOM
        tags["compression"] = _LOSSLESS_TIFF[int(page.compression)]
    if int(page.samplesperpixel) > 1:  # how colour samples are laid out (grey pages have no layout to keep)
        tags["planarconfig"] = "separate" if int(page.planarconfig) == 2 else "contig"
    x, y = page.tags.get("XResolution"), page.tags.get("YResolution")
    if x is not None and y is not None:
        tags["resolution"] = (x.value, y.value)
        unit = page.tags.get("ResolutionUnit")
        tags["resolutionunit"] = int(unit.value) if unit is not None else 2  # the TIFF default: inch
    if tif.is_imagej:
        derived = ("ImageJ", "images", "channels", "slices", "frames", "hyperstack", "mode", "loop", "min", "max")
        tags.update(imagej=True, metadata={k: v for k, v in (tif.imagej_metadata or {}).items() if k not in derived})
        return tags
    description = page.tags.get("ImageDescription")
    if description is not None and isinstance(description.value, str) and description.value:
        tags.update(description=description.value, metadata=None)  # the source's description, not tifffile's own
    return tags


def _read_tiff(path: Path, strict: bool) -> tuple[np.ndarray, dict]:
    """TIFF -> ``(C, rows, cols[, pages])`` samples and writer info; one non-singleton extra axis is the depth."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr, axes, page = series.asarray(), series.axes, tif.pages[0]
            photometric, colormap = int(page.photometric), page.colormap
            extrasamples = tuple(int(v) for v in (page.extrasamples or ()))
            tiff_tags = _tiff_tags(tif)
    except Exception as e:  # tifffile raises several types for corrupt files
        raise BadImageError(path, f"not a readable TIFF ({type(e).__name__}: {e})") from e
    info: dict = {"tiff_tags": tiff_tags}
    series_shape, added = arr.shape, "S" not in axes
    if not added:  # samples first
        arr, axes = np.moveaxis(arr, axes.index("S"), 0), "S" + axes.replace("S", "")
    else:
        arr, axes = arr[None], "S" + axes
    extra = [i for i, a in enumerate(axes) if i > 0 and a not in "YX" and arr.shape[i] > 1]
    if not axes.endswith("YX") or len(extra) > 1 or arr.shape[0] > 4:
        why = f"unsupported array shape {tuple(series_shape)} (axes {axes[1:] if added else axes}); expected a 2-D "
        raise BadImageError(path, why + "image or a 3-D stack, grey or RGB")
    keep = [0, *extra, len(axes) - 2, len(axes) - 1]
    arr = arr.reshape([arr.shape[i] for i in keep])  # drop singleton axes: (S[, D], Y, X)
    if extra and tiff_tags.get("imagej"):  # a Z-stack stays a Z-stack, a time series a time series (ImageJ: T, Z, C)
        letter = axes[extra[0]]
        tiff_tags["metadata"]["axes"] = (letter if letter in "TZC" else "Z") + "YX"
    if extra:
        if arr.shape[0] > 1:  # read as a colour volume; the writer reproduces grey stacks only
            why = f"unsupported array shape {tuple(series_shape)} (axes {axes[1:] if added else axes}): multi-page "
            why += "colour TIFF stacks are not supported for enhancement (grey stacks are)"
            if strict:
                raise BadImageError(path, why)
            info["unwritable"] = why
        arr = np.moveaxis(arr, 1, -1)  # (S, Y, X, D)
        info["pages"] = int(arr.shape[-1])
    if photometric == 3 and colormap is not None and arr.shape[0] == 1:  # palette TIFF
        _refuse_or_note(path, "P", strict, info)
        arr = np.asarray(colormap)[:, arr[0]]
        arr = (arr // 257).astype(np.uint8) if not np.any(arr % 257) else arr
    elif arr.shape[0] in (2, 4):  # grey + alpha, RGB + alpha: the alpha rides along (write_raster puts it back)
        info["alpha"], arr = np.ascontiguousarray(arr[-1]), arr[:-1]
        tiff_tags["extrasamples"] = extrasamples or (2,)  # the source's kind of alpha, else unassociated
    if arr.dtype == np.bool_:  # 1-bit
        _refuse_or_note(path, "1", strict, info)
        arr = arr.astype(np.uint8) * 255
    info["photometric"] = "rgb" if arr.shape[0] == 3 else "minisblack"
    return arr, info


def read_raster(path: str | Path, strict: bool = True) -> NativeImage:
    """Read a PNG/JPEG/BMP/TIFF file as a :class:`NativeImage`: ``(C, rows, cols)``, or ``(C, rows, cols, pages)`` for
    a multi-page TIFF stack; C = 1 or 3; values as stored.

    Args:
        path: the file.
        strict: refuse layouts that cannot be written back as read (palette, CMYK, 1-bit); with False they
            are decoded to grey/RGB (:data:`~dpe_monai.io.formats.UNWRITABLE_LAYOUTS`).

    Raises:
        BadImageError: unreadable files, 16-bit colour or grey+alpha PNG, refused layouts, or TIFFs of more than
            one stack axis.
    """
    path = Path(path)
    kind = RASTER_SUFFIXES[next(s for s in RASTER_SUFFIXES if path.name.lower().endswith(s))]
    if path.stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    data, info = _read_tiff(path, strict) if kind == "tiff" else _read_pil(path, kind, strict)
    data = data[None] if data.ndim == 2 else data
    if data.dtype.kind not in "uif":
        raise BadImageError(path, f"unsupported sample type {data.dtype}")
    return NativeImage(array=data.astype(np.float64), kind=kind, sources=[path], dtype=data.dtype, info=info)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def write_raster(image: NativeImage, values: np.ndarray, out_path: str | Path) -> None:
    """Write ``values`` (``image.array`` layout, the file's units) in ``image``'s format, bit depth and channels.

    A multi-page TIFF stack ``(C, rows, cols, pages)`` is written with the same page count. The pixel size
    (PNG/JPEG/BMP dpi, TIFF resolution and unit), an alpha channel (as read), a TIFF's description (ImageJ's spacing
    and units) and its sample layout (planar or interleaved) are kept, and so are a PNG's or JPEG's EXIF
    (orientation) and ICC profile and a PNG's text chunks, gamma and transparent value.

    Raises:
        BadImageError: ``image`` was decoded from a layout that cannot be written back as read.
    """
    if "unwritable" in image.info:
        raise BadImageError(image.sources[0], image.info["unwritable"])
    data = _cast(values, image.dtype)
    if "transparency" in image.info.get("keep", {}):
        data = _keep_transparent(data, image.array, image.info["keep"]["transparency"])
    if "alpha" in image.info:  # the source's alpha channel, unchanged, after the colour channels
        data = np.concatenate([data, image.info["alpha"][None].astype(data.dtype)])
    if data.ndim == 4:  # (C, rows, cols, pages) -> (pages, rows, cols, C)
        data = np.moveaxis(data, -1, 1)
    hwc = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    if image.kind == "tiff":
        tags = dict(image.info.get("tiff_tags", {}))
        if tags.get("planarconfig") == "separate" and hwc.ndim == 3 and hwc.shape[-1] in (2, 3, 4):
            hwc = np.moveaxis(hwc, -1, 0)  # samples first, as the source stored them
        tifffile.imwrite(out_path, hwc, photometric=image.info.get("photometric", "minisblack"), **tags)
        return
    pil = Image.fromarray(hwc)
    fmt = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}[image.kind]
    kwargs: dict = {"quality": 95} if fmt == "JPEG" else {}
    kwargs.update(_save_kwargs(fmt, image.info.get("keep", {})))
    if "dpi" in image.info:
        kwargs["dpi"] = image.info["dpi"]
    pil.save(out_path, format=fmt, **kwargs)


def write_lossless(path_stem: str | Path, array: np.ndarray) -> Path:
    """Write a 2-D image losslessly at its bit depth (the packaged collection's item files).

    8-bit grey/RGB and 16-bit grey go to PNG; 16-bit RGB goes to zlib-compressed TIFF (Pillow cannot write it).

    Args:
        path_stem: destination without suffix.
        array: ``uint8`` or ``uint16``, ``(H, W)`` or ``(H, W, 3)``.

    Returns:
        The written file.
    """
    arr = np.ascontiguousarray(array)
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3):
        raise ValueError(f"write_lossless needs uint8/uint16 (H, W[, 3]) data, got {arr.dtype} {arr.shape}")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3 and arr.dtype == np.uint16:
        out = stem.with_name(stem.name + ".tif")
        tifffile.imwrite(out, arr, photometric="rgb", compression="zlib")
        return out
    out = stem.with_name(stem.name + ".png")
    Image.fromarray(arr).save(out, compress_level=6)
    return out
