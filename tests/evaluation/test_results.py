"""results.parquet: appends replace the file atomically, and a reader never sees a torn one."""
import multiprocessing

from had.evaluation import results

ROW = {name: None for name in results.SCHEMA.names} | {"model": "m", "task": "t", "seed": 0, "lr": 1e-3,
                                                         "test_metric": 0.5, "protocol": "{}"}


def _append_forever(path: str, n: int) -> None:
    for i in range(n):
        results.append_results(path, [ROW | {"seed": i, "protocol": "x" * (i % 7)}])


def test_a_reader_polling_while_another_process_appends_never_sees_a_torn_file(tmp_path):
    """`had eval` resumes and `--compare` read a file another sweep may be appending to; every read
    must give a whole file (the old or the new), in order. Was flaky: pyarrow opened the path twice."""
    path = tmp_path / "results.parquet"
    writer = multiprocessing.get_context("spawn").Process(target=_append_forever, args=(str(path), 150))
    writer.start()
    seen = []
    try:
        while writer.is_alive() or not seen:
            rows = results.read_results(path)
            assert [r["seed"] for r in rows] == list(range(len(rows)))
            seen.append(len(rows))
    finally:
        writer.join()
    assert writer.exitcode == 0 and len(results.read_results(path)) == 150
    assert seen == sorted(seen) and len(set(seen)) > 10  # many distinct states were read
