from pathlib import Path

import numpy as np
import pytest

import boneimg as bi

# Real public data shared beside the repository (../shared/data); never copied into it.
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


def rand(shape, dtype=np.uint16, seed=0):
    """A fixed-seed random array spanning the whole range of `dtype` (floats in [-500, 500))."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.random(shape) * 1000 - 500).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def listing(folder):
    """Every path under `folder` with its size and modification time, to prove nothing was written."""
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")
    )


def assert_load_fails(path, match=None, *, name=None, **kwargs):
    """bi.load(path) raises a BoneImgError that names the file, and leaves its folder untouched."""
    folder = Path(path).parent
    before = listing(folder)
    with pytest.raises(bi.BoneImgError) as info:
        bi.load(path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert (name or Path(path).name) in message
    if match:
        assert match in message, message
    assert listing(folder) == before
    return message


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is missing (expected ../shared/data beside the repository)")
    return SHARED_DATA
