"""Packaging and layering: what an installed boneimg contains and what it imports."""

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light_and_gui_free():
    """`import boneimg` and the CLI must not pull torch (lazy, models only) or any GUI toolkit."""
    code = (
        "import sys, boneimg, boneimg.cli, boneimg.models.weights, boneimg.models.datasets; "
        "heavy = {'torch', 'napari', 'qtpy', 'magicgui', 'PyQt6', 'PySide6'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_contracts():
    """The library never imports napari/Qt/magicgui nor the CLI and plugin layers above it."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plugin_package_belongs_to_boneimg():
    """`boneimg_napari` (the napari_plugin/ folder) is ours, not the unrelated napari-plugin package."""
    assert "boneimg" in importlib.metadata.packages_distributions()["boneimg_napari"]


@pytest.mark.slow
def test_wheel_carries_models_sample_data_and_plugin(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("boneimg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "boneimg/_weights/README.md" in names
    assert {"boneimg/_weights/nuclei_he.pt", "boneimg/_weights/nuclei_he.json", "boneimg/_weights/nuclei_he.md"} <= names
    assert "boneimg/models/network.py" in names
    assert "boneimg/sample_data/synthetic.py" in names
    assert "boneimg_napari/__init__.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "boneimg = boneimg.cli:main" in entry_points
