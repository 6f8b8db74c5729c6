"""Properties: whatever a signer put in a payload, decoding answers with a result or with
EnvelopeError('bad_payload') — never another exception — and what it accepts is consistent."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nengtan.checkpoint import decode_checkpoint
from nengtan.envelope import (
    MEDIA_TYPE_V1,
    QUALITIES,
    Batch,
    columnar_document,
    decode_batch,
    decode_payload,
)
from nengtan.errors import EnvelopeError
from nengtan.measurements import VOCABULARY
from tests.vectors.samples import SAMPLE

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["m1", "voltage_l1_n", "disk_cap", "A" * 43, "good", "suspect"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["v", "gw", "epoch", "seq", "last", "prev", "synced", "series",
                         "cycles", "gaps", "clock", "boot_id", "mono_ms", "wall_ms", "x"]),
        inner, max_size=6),
    max_leaves=40,
)


def _deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush()


def _check(batch: Batch) -> None:
    n = batch.reading_count
    assert sum(batch.cycle_sizes) == n
    assert len(batch.cycle_sizes) == batch.last - batch.seq + 1
    columns = (batch.seqs, batch.meters, batch.measurements, batch.ts_ms, batch.values,
               batch.qualities)
    assert all(len(c) == n for c in columns)
    for seq, meter, measurement, ts, value, quality in batch.rows():
        assert batch.seq <= seq <= batch.last and measurement in VOCABULARY and meter
        assert type(ts) is int and 0 <= ts < 2**53
        assert quality in QUALITIES and (value is None) == (quality == "bad")
        assert value is None or (type(value) is float and math.isfinite(value))
    batch.envelope()  # and it can be turned into objects


def _decode(payload: bytes) -> None:
    try:
        batch = decode_batch(payload)
    except EnvelopeError as exc:
        assert exc.reason == "bad_payload"
    else:
        _check(batch)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_as_a_v2_payload(payload: bytes) -> None:
    _decode(payload)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_as_a_v2_document(document: object) -> None:
    _decode(_deflate(json.dumps(document).encode()))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


_VALID = json.loads(columnar_document(SAMPLE))
_PATHS = _paths(_VALID)[1:]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _json), min_size=1, max_size=3))
def test_a_valid_document_with_parts_replaced(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    document = json.loads(json.dumps(_VALID))
    for path, value in changes:
        target: Any = document
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this place
    _decode(_deflate(json.dumps(document).encode()))


@settings(max_examples=200, deadline=None)
@given(_json)
def test_arbitrary_json_as_a_v1_payload_or_a_checkpoint(document: object) -> None:
    raw = json.dumps(document).encode()
    for decode in (lambda p: decode_payload(p, MEDIA_TYPE_V1), decode_checkpoint):
        try:
            decode(raw)
        except EnvelopeError as exc:
            assert exc.reason == "bad_payload"
