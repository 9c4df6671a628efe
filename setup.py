"""Install script for dpe-monai. Exact versions are pinned in constraints.txt (see the Makefile)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


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
    entry_points={"console_scripts": ["dpe-monai=dpe_monai.cli:main"]},
)
