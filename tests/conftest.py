import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


def cli(name: str) -> str:
    """Path of an installed console script of this environment."""
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="session")
def class_check():
    from audiodiff.evaluation import SyntheticClassCheck

    return SyntheticClassCheck()
