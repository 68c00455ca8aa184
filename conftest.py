"""Repository-wide test setup."""

from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Servers publish their endpoints into file discovery by default: keep the test run's
    # records (and those of the worker processes it starts, which inherit the environment)
    # out of the user's runtime directory and away from other runs.
    if "REQUESTPLANE_DISCOVERY_FILE_DIR" not in os.environ:
        os.environ["REQUESTPLANE_DISCOVERY_FILE_DIR"] = tempfile.mkdtemp(
            prefix="requestplane-test-discovery-"
        )
