"""The Nengtan cloud receiver: verify signed batches, store each cycle once, report energy-carbon.

The pipeline is ``service.run`` (MQTT) → ``Ingestor.ingest`` (verify, chain, dedupe, quarantine;
envelopes and checkpoints) → ``Store`` (one transaction per envelope) → ``build_report`` (kWh,
kgce, kgCO2 per local day) and ``build_gap_report`` (missing and declared cycle ranges).
"""

from cloud_receiver.config import ReceiverConfig, load_config, parse_config
from cloud_receiver.gaps import GapReport, build_gap_report
from cloud_receiver.ingest import Ingestor, Outcome, Status
from cloud_receiver.registry import Registry
from cloud_receiver.report import Report, build_report
from cloud_receiver.service import run
from cloud_receiver.store import MissingRange, Store, open_store

__all__ = [
    "GapReport",
    "Ingestor",
    "MissingRange",
    "Outcome",
    "ReceiverConfig",
    "Registry",
    "Report",
    "Status",
    "Store",
    "build_gap_report",
    "build_report",
    "load_config",
    "open_store",
    "parse_config",
    "run",
]
