"""Meter models as data: register maps, value decoding and read planning."""

from agent.meters._decode import decode_registers, encode_value, register_count
from agent.meters._model import MeterModel, Point, Probe, load_model_file, models
from agent.meters._plan import Block, LineTiming, plan_reads

__all__ = [
    "Block",
    "LineTiming",
    "MeterModel",
    "Point",
    "Probe",
    "decode_registers",
    "encode_value",
    "load_model_file",
    "models",
    "plan_reads",
    "register_count",
]
