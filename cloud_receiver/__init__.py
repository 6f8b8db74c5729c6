"""The Nengtan cloud receiver: verify signed batches, store each cycle once, report energy-carbon.

The pipeline is ``service.run`` (MQTT) → ``Ingestor.ingest`` (verify, chain, dedupe, quarantine)
→ ``Store`` (one transaction per envelope) → ``build_report`` (kWh, kgce, kgCO2 per local day).
"""

from cloud_receiver.config import ReceiverConfig, load_config, parse_config
from cloud_receiver.ingest import Ingestor, Outcome, Status
from cloud_receiver.registry import Registry
from cloud_receiver.report import Report, build_report
from cloud_receiver.service import run
from cloud_receiver.store import Store, open_store

__all__ = [
    "Ingestor",
    "Outcome",
    "ReceiverConfig",
    "Registry",
    "Report",
    "Status",
    "Store",
    "build_report",
    "load_config",
    "open_store",
    "parse_config",
    "run",
]
