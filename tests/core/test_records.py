"""Records: the envelope and provenance fields."""

from __future__ import annotations

from bench.core import records


def test_make_record_has_envelope_and_provenance():
    record = records.make_record("evaluate", split="val")
    assert record["schema_version"] == records.SCHEMA_VERSION
    assert record["kind"] == "evaluate" and record["split"] == "val"
    prov = record["provenance"]
    assert prov["utc_time"].endswith("Z")
    assert set(prov["git"]) == {"commit", "dirty"}
    assert "numpy" in prov["packages"]
