import numpy as np
import pytest
import torch

from mcutils import report


def test_plain_converts_and_rounds():
    val = report.plain({"a": torch.tensor(0.123456), 3: np.float32(2.5), "l": [np.int64(4)],
                        "t": torch.tensor([1.0, 2.0])})
    assert val == {"a": 0.1235, "3": 2.5, "l": [4], "t": [1.0, 2.0]}
    assert isinstance(val["l"][0], int)


def test_record_outside_kernel_returns_plain_value():
    assert report.record("ch99_x", np.float64(0.987654), digits=2) == 0.99


def test_claims_table_verdicts_and_check():
    rows = [report.claim("A", "p", "1", holds=True, expected=True),
            report.claim("B", "p", "2", holds=False, partly=True),
            report.claim("C", "p", "3", holds=False)]
    df = report.claims_table(rows, check=True)
    assert df["verdict"].tolist() == ["reproduced", "partly", "not at this scale"]
    bad = rows + [report.claim("D", "p", "4", holds=False, expected=True)]
    with pytest.raises(AssertionError, match="D"):
        report.claims_table(bad, check=True)
    report.claims_table(bad, check=False)
