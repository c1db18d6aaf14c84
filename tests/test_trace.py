import numpy as np
import pandas as pd
import pytest

from workload.trace import (COORD_SCHEMA, SAMPLE_SCHEMA, TraceError, conform, empty, read_table, tau_overlap,
                            write_table)


def _samples(n=6):
    rng = np.random.default_rng(0)
    d = {c: rng.integers(0, 100, n) for c in SAMPLE_SCHEMA}
    d["step"] = rng.random(n)
    return conform(pd.DataFrame(d), SAMPLE_SCHEMA)


@pytest.mark.parametrize("suffix", [".parquet", ".csv.gz"])
def test_round_trip_preserves_schema(tmp_path, suffix):
    df = _samples()
    path = write_table(df, tmp_path / f"t{suffix}")
    back = read_table(path, SAMPLE_SCHEMA)
    pd.testing.assert_frame_equal(back, df)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_conform_rejects_wrong_columns_and_unknown_format(tmp_path):
    with pytest.raises(TraceError, match="missing"):
        conform(_samples().drop(columns=["term"]), SAMPLE_SCHEMA)
    with pytest.raises(TraceError, match="parquet"):
        write_table(_samples(), tmp_path / "t.csv")
    assert list(empty(COORD_SCHEMA).dtypes.astype(str)) == list(COORD_SCHEMA.values())


def test_tau_overlap_counts_in_flight_and_started_during():
    """Three samples: A [0,10), B [2,5), C [6,12); A overlaps B and C, B only A, C only A."""
    df = pd.DataFrame({"start_seq": [0, 1, 2], "finished_at_start": [0, 0, 1], "started_at_end": [3, 2, 3]})
    assert tau_overlap(df).tolist() == [2, 1, 1]
