"""Merge a meter's points into the fewest Modbus requests the wire allows.

Cost model (shared/reference/meters.md §2.2): each register costs two character times on the
wire; each extra request costs a 13-byte frame overhead, two 3.5-character silences and the
meter's turnaround. A hole between two points is read through when that is cheaper than a new
request, as long as the block stays within the model's register limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.meters._model import Point


@dataclass(frozen=True)
class LineTiming:
    baudrate: int
    parity: str = "N"
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def silence_s(self) -> float:
        """t3.5: fixed at 1.75 ms above 19200 Bd (Modbus over Serial Line V1.02 §2.5.1.1)."""
        return 3.5 * self.char_s if self.baudrate <= 19200 else 0.00175

    def transaction_s(self, registers: int, turnaround_s: float = 0.0) -> float:
        """Minimum wire time of one FC03/FC04 read: request, response and the silences."""
        return (13 + 2 * registers) * self.char_s + self.silence_s + max(turnaround_s, self.silence_s)


@dataclass(frozen=True)
class Block:
    function: int
    start: int
    count: int
    points: tuple[Point, ...]


def plan_reads(points: Iterable[Point], *, max_registers: int, timing: LineTiming,
               turnaround_s: float = 0.0, bridge_holes: bool = True) -> list[Block]:
    """Return read blocks covering ``points``: per function code, ascending, holes bridged by cost.

    With ``bridge_holes=False`` only adjacent points share a request: for meters that answer
    exception 02 when a read covers a register they do not define.
    """
    points = list(points)  # walked once per function code
    request_overhead = timing.transaction_s(0, turnaround_s) if bridge_holes else 0.0
    register_cost = 2 * timing.char_s
    blocks: list[Block] = []
    for function in sorted({p.function for p in points}):
        # A point's span includes the registers that scale it (Acrel PZ decimal-point registers):
        # they must come back in the same answer as the value.
        ordered = sorted((p for p in points if p.function == function), key=_first)
        current: list[Point] = []
        for point in ordered:
            if current:
                start, end = _first(current[0]), max(_end(p) for p in current)
                hole = max(0, _first(point) - end)
                fits = max(end, _end(point)) - min(start, _first(point)) <= max_registers
                if fits and (hole == 0 or hole * register_cost < request_overhead):
                    current.append(point)
                    continue
                blocks.append(_block(function, current))
            current = [point]
        if current:
            blocks.append(_block(function, current))
    return blocks


def _first(point: Point) -> int:
    return point.registers[0]


def _end(point: Point) -> int:
    return point.registers[-1] + 1


def _block(function: int, points: list[Point]) -> Block:
    start = min(_first(p) for p in points)
    return Block(function, start, max(_end(p) for p in points) - start, tuple(points))
