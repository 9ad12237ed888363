"""Every workers module imports on its own, first in a fresh interpreter: no import cycle
hides behind the order in which a test run happens to import them."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import workers

MODULES = sorted(f"workers.{info.name}" for info in pkgutil.iter_modules(workers.__path__))


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_first(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
