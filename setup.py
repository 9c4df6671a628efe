"""Install script for dpe-monai. Exact versions are pinned in constraints.txt (see the Makefile)."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
BUNDLE = HERE / "bundles" / "dpe_enhancement"
#: what a wheel ships of the bundle (under ``dpe_monai/bundles/dpe_enhancement``; run outputs are left out)
BUNDLE_FILES = ("LICENSE", "configs/**/*.json", "configs/*.conf", "models/model.pt", "docs/*", "scripts/*.py")


class BuildPyWithBundle(build_py):
    """``build_py`` that also copies the MONAI bundle into the built package, so a non-editable install finds it."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not BUNDLE.is_dir():
            return  # an editable install finds the bundle in the checkout (dpe_monai/locate.py)
        target = Path(self.build_lib) / "dpe_monai" / "bundles" / "dpe_enhancement"
        for pattern in BUNDLE_FILES:
            for src in BUNDLE.glob(pattern):
                if src.is_file():
                    dst = target / src.relative_to(BUNDLE)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)


def _requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    skip = {"pytest", "ruff"}
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#") and ln.split("=")[0] not in skip]


setup(
    name="dpe-monai",
    version="0.1.0",
    description="Deep Perceptual Enhancement (Sharif et al., JBHI 2022) for medical images, built on MONAI",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dpe_monai", "dpe_monai.*"]),
    include_package_data=True,
    install_requires=_requirements(),
    cmdclass={"build_py": BuildPyWithBundle},
    entry_points={"console_scripts": ["dpe-monai=dpe_monai.cli:main"]},
)
