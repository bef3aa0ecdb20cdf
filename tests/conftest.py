"""Shared fixtures: a flow on fake modules with a clock the test moves."""

from __future__ import annotations

import pytest
from support import FakeClock, fake_modules, test_sealer

from kiosk.config import SessionConfig
from kiosk.flow.machine import EnrollmentFlow
from kiosk.store.sqlite import EnrollmentStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path):
    store = EnrollmentStore(tmp_path / "data", test_sealer())
    yield store
    store.close()


@pytest.fixture
def make_flow(clock, store):
    """make_flow(**fake_modules options, sink=..., session=...) -> EnrollmentFlow"""
    made = []

    def make(sink=None, session: SessionConfig | None = None, modules=None, **options):
        modules = modules or fake_modules(**options)
        made.append(modules)
        return EnrollmentFlow(
            station_id="TEST-01",
            modules=modules,
            sink=sink or store,
            session=session or SessionConfig(),
            clock=clock,
        )

    yield make
    for modules in made:
        modules.close()
