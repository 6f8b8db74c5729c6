"""Retiring a member of a shared subscription (`nengtan receiver retire`): the share the broker
queued for a dead member is ingested, nothing is lost or stored twice, and afterwards the
broker hands that member nothing more (the stream published after the retirement is stored in
full by the remaining members, which it would not be if the broker still queued a share for
the retired client id)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from random import Random

import pytest
from receiver_fleet import (
    STORAGE_KINDS,
    Publisher,
    ReceiverProcess,
    Storage,
    broker,
    build_plant,
    reaped,
    rollup_mismatches,
    storage_for,
    stored_envelopes,
    wait_drained,
    wait_until,
    write_config,
    write_registry,
)

from cloud_receiver.config import load_config
from cloud_receiver.retire import session_present
from cloud_receiver.store import open_store

pytestmark = pytest.mark.integration

GROUP = "nengtan-ingest"


@pytest.fixture(params=STORAGE_KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    with storage_for(request.param, tmp_path) as found:
        yield found


def retire(config: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "nengtan", "receiver", "retire", "--config",
                           str(config), "--idle-s", "1.5", "--timeout-s", "60", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_dead_members_queued_share_is_drained_and_then_it_gets_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: Storage) -> None:
    # 4 gateways x 2 meters, 240 cycles, one cycle per envelope: 960 envelopes in three parts.
    plant = build_plant(Random(7), gateways=4, meters=2, cycles=240, cycles_per_envelope=1)
    total = len(plant.messages)
    before, during = plant.messages[: total // 3], plant.messages[total // 3: 2 * total // 3]
    after = plant.messages[2 * total // 3:]
    mq = broker(tmp_path, monkeypatch)
    write_registry(tmp_path / "gateways", plant)
    members = [ReceiverProcess(name, write_config(
        tmp_path / f"receiver-{name}.toml", port=mq.port, storage=storage,
        client_id=f"nengtan-receiver-{name}", share_group=GROUP,
        registry=tmp_path / "gateways"), tmp_path) for name in ("a", "b", "c")]
    victim = members[2]
    try:
        with reaped(members):
            for member in members:
                member.start()
            for member in members:
                member.wait_subscribed()
            Publisher(mq.port, before, duration_s=1.0).start().wait()
            wait_until(lambda: stored_envelopes(storage) == len(before), "the first third",
                       timeout=60)
            victim.kill()
            # The victim's round-robin share of this part waits in its session on the broker.
            Publisher(mq.port, during, duration_s=1.0).start().wait()
            stuck = len(before) + len(during) - wait_drained(
                storage, len(before) + len(during), members[:2], idle_s=2.0)
            assert stuck >= len(during) // 3 - 1, f"only {stuck} waited for the dead member"

            result = retire(victim.config)
            assert result["session_present"] is True
            assert result["messages"] == stuck, result
            assert stored_envelopes(storage) == len(before) + len(during)
            assert session_present(load_config(victim.config).mqtt, clean=False) is False

            # Published after the retirement: the two members left take all of it.
            Publisher(mq.port, after, duration_s=1.0).start().wait()
            assert wait_drained(storage, total, members[:2], idle_s=3.0) == total
            for member in members[:2]:
                assert member.stop() == 0
                assert member.problems() == [], member.name
    finally:
        mq.stop()
    store = storage.open()
    try:
        stats, quarantined = store.stats(), store.quarantine_counts()
        mismatches = rollup_mismatches(store, plant)
    finally:
        store.close()
    assert (stats["envelopes"], stats["readings"]) == (total, plant.readings)
    assert quarantined == {}
    assert mismatches == [], mismatches[:10]


def test_on_mqtt_3_1_1_the_queued_share_is_drained_and_the_session_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """3.1.1 has no session expiry to set on DISCONNECT: retire ends the session by connecting
    once more with a clean session. A member stopped normally (its session kept) gets its
    share queued; retire stores it, and the broker then keeps nothing for that client id."""
    with storage_for("sqlite", tmp_path) as storage:
        plant = build_plant(Random(5), gateways=2, meters=1, cycles=60, cycles_per_envelope=1)
        mq = broker(tmp_path, monkeypatch)
        write_registry(tmp_path / "gateways", plant)
        member = ReceiverProcess("old", write_config(
            tmp_path / "receiver-old.toml", port=mq.port, storage=storage,
            client_id="nengtan-receiver-old", share_group=GROUP, protocol="3.1.1",
            registry=tmp_path / "gateways"), tmp_path)
        try:
            with reaped([member]):
                member.start()
                member.wait_subscribed()
                assert member.stop() == 0  # a clean stop keeps a 3.1.1 persistent session
                Publisher(mq.port, plant.messages, duration_s=0.5).start().wait()
                assert stored_envelopes(storage) == 0  # all of it waits in the session
                result = retire(member.config)
                mqtt_config = load_config(member.config).mqtt
                # Asking with clean_session=False would start a session of its own; a 3.1.1
                # broker answers "present" only if one survived, so ask, then clear it again.
                assert session_present(mqtt_config, clean=False) is False
                session_present(mqtt_config, clean=True)
        finally:
            mq.stop()
        assert result["session_present"] is True
        assert result["messages"] == len(plant.messages)
        assert stored_envelopes(storage) == len(plant.messages)


def test_retiring_a_client_id_the_broker_never_saw_ends_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with storage_for("sqlite", tmp_path) as storage:
        plant = build_plant(Random(3), gateways=1, meters=1, cycles=1, cycles_per_envelope=1)
        mq = broker(tmp_path, monkeypatch)
        write_registry(tmp_path / "gateways", plant)
        open_store(storage.target).close()  # retire opens an existing store, never creates one
        config = write_config(tmp_path / "receiver.toml", port=mq.port, storage=storage,
                              client_id="nengtan-receiver-never", share_group=GROUP,
                              registry=tmp_path / "gateways")
        try:
            result = retire(config)
        finally:
            mq.stop()
    assert result["session_present"] is False
    assert result["messages"] == 0
