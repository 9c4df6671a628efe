"""The bundle is found in a source checkout, in a non-editable install (package data) and through the environment."""

from __future__ import annotations

from pathlib import Path

from dpe_monai.locate import bundle_dir


def _bundle(root: Path) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "inference.json").write_text("{}\n")
    return root


def test_installed_layout_finds_the_packaged_bundle(tmp_path, monkeypatch):
    monkeypatch.delenv("DPE_MONAI_BUNDLE", raising=False)
    package = tmp_path / "site-packages" / "dpe_monai"  # a wheel: no repository around it
    package.mkdir(parents=True)
    shipped = _bundle(package / "bundles" / "dpe_enhancement")
    assert bundle_dir(package) == shipped


def test_checkout_layout_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DPE_MONAI_BUNDLE", raising=False)
    package = tmp_path / "repo" / "dpe_monai"
    package.mkdir(parents=True)
    repo_bundle = _bundle(tmp_path / "repo" / "bundles" / "dpe_enhancement")
    assert bundle_dir(package) == repo_bundle
    monkeypatch.setenv("DPE_MONAI_BUNDLE", str(tmp_path / "elsewhere"))
    assert bundle_dir(package) == tmp_path / "elsewhere"


def test_this_checkout_has_the_bundle(monkeypatch):
    monkeypatch.delenv("DPE_MONAI_BUNDLE", raising=False)
    assert (bundle_dir() / "configs" / "inference.json").is_file()
    assert (bundle_dir() / "models" / "model.pt").is_file()
