from pathlib import Path

import pytest

# Real public data shared beside the repository (../shared/data); never copied into it.
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is missing (expected ../shared/data beside the repository)")
    return SHARED_DATA
