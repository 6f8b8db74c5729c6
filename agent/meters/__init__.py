"""Meter models as data: register maps, value decoding and read planning."""

from agent.meters._decode import decode_registers, encode_value, register_count
from agent.meters._model import (Exponent, MeterModel, Point, Probe, SignBit, load_model_file,
                                 models)
from agent.meters._plan import Block, LineTiming, plan_reads
from agent.meters._point import RegisterReader, decode_point, ratio_factor

__all__ = [
    "Block",
    "Exponent",
    "LineTiming",
    "MeterModel",
    "Point",
    "Probe",
    "RegisterReader",
    "SignBit",
    "decode_point",
    "decode_registers",
    "encode_value",
    "load_model_file",
    "models",
    "plan_reads",
    "ratio_factor",
    "register_count",
]
