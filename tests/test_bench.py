"""The benchmark's plumbing: each timed run in a process of its own."""

import pytest

from flows.bench import _in_own_process


def test_a_run_that_fails_in_its_own_process_is_reported_not_waited_for(tmp_path):
    # No Prefect server listens on the discard port: the run fails as it starts.
    with pytest.raises(RuntimeError, match=r"a benchmark run failed \(exit code 1\)"):
        _in_own_process({"source": str(tmp_path / "absent.sqlite"), "out": str(tmp_path)},
                        "http://127.0.0.1:9/api")
