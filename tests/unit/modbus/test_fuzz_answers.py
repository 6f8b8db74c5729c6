"""Whatever bytes come back on the line, the poller raises nothing: it flags the reading."""

from __future__ import annotations

import os
import threading
import tty
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import BusConfig, MeterConfig
from agent.inputs.modbus_rtu.bus import rtu_poller
from agent.meters import models
from agent.modbus._poller import ModbusPoller


class Line:
    """A pty whose far end answers every request with the bytes a test chose."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.answer = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import select
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                os.read(self.master, 256)
                if self.answer:
                    os.write(self.master, self.answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def line_and_poller() -> Iterator[tuple[Line, ModbusPoller]]:
    line = Line()
    meter = MeterConfig("m", models()["eastron-sdm120"], 1, 10, 10)
    poller = rtu_poller(BusConfig("rtu", line.port, 115200, "N", 1, 30, 10, (meter,)))
    poller.open()
    yield line, poller
    poller.close()
    line.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.one_of(
    st.binary(max_size=300),
    # Plausible starts (our unit, the right function code) make pymodbus parse further.
    st.builds(lambda body: b"\x01\x04" + body, st.binary(max_size=200)),
    st.builds(lambda body: b"\x01\x84" + body, st.binary(max_size=8)),
))
def test_any_answer_yields_readings_flagged_or_good_never_an_exception(
        line_and_poller: tuple[Line, ModbusPoller], answer: bytes) -> None:
    line, poller = line_and_poller
    line.answer = answer
    result = poller.read("m")
    assert result.readings
    for reading in result.readings:
        assert reading.quality in ("good", "suspect", "bad")
        assert (reading.value is None) == (reading.quality == "bad")
