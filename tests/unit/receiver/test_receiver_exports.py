"""The package's public surface is exactly its ``__all__``."""

from __future__ import annotations

import cloud_receiver


def test_the_public_names_are_the_documented_ones() -> None:
    assert sorted(cloud_receiver.__all__) == [
        "GapReport", "Ingestor", "MissingRange", "Outcome", "ReceiverConfig", "Registry",
        "Report", "Status", "Store", "build_gap_report", "build_report", "load_config",
        "open_store", "parse_config", "run",
    ]
    for name in cloud_receiver.__all__:
        assert getattr(cloud_receiver, name) is not None
