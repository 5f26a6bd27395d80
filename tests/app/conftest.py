"""The app's sessions the AppTest tests start from: each built once, read-only; a test takes a copy of its
own (:func:`tests.support.apptest.copied`), so that no test moves on an app another test reads."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import clean, copied, fresh


@pytest.fixture(scope="session")
def first_run() -> AppTest:
    """The app as a new session's first run leaves it (the explorer on demo-pre): never run again, only
    copied."""
    return clean(fresh().run())


@pytest.fixture
def explorer(first_run: AppTest) -> AppTest:
    """A session of the test's own, as the first run left it: the explorer on demo-pre."""
    return copied(first_run)
