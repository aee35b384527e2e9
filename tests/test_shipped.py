"""Shipped data is found in a checkout and in a wheel install; the golden fallback order."""

from __future__ import annotations

from pathlib import Path

from envaudit import shipped, store


def test_checkout_first_then_installed_data(tmp_path, monkeypatch):
    checkout, installed = tmp_path / "checkout", tmp_path / "installed"
    (installed / "reference").mkdir(parents=True)
    monkeypatch.setattr(shipped, "CHECKOUT", checkout)
    monkeypatch.setattr(shipped, "INSTALLED", installed)
    assert shipped.shipped("reference") == installed / "reference"
    (checkout / "reference").mkdir(parents=True)
    assert shipped.shipped("reference") == checkout / "reference"
    # neither: the checkout path, so that the error names where it was expected
    assert shipped.shipped("assets") == checkout / "assets"


def test_this_checkout_ships_assets_and_the_reference_bundle():
    assert (shipped.shipped("assets") / "SHA256SUMS").is_file()
    assert (shipped.shipped("reference") / "manifest.json").is_file()


def test_check_falls_back_from_argument_to_user_bundle_to_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store.resolve_golden("given") == Path("given")
    assert store.resolve_golden(None) == store.REFERENCE_BUNDLE
    user = tmp_path / "envaudit" / "golden" / "default"
    user.mkdir(parents=True)
    (user / "manifest.json").write_text("{}")
    assert store.resolve_golden(None) == user
