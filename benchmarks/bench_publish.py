"""What publishing to optuna-dashboard costs a search: the study note (at the start, when the
best changes, at most every 10 s otherwise, at the end), the range-test curves artifact and
the final report artifact.

Runs the quickstart study (``studies/quickstart.yaml``: digits, 7 optimizers, ``lr: auto``,
30 trials) with ``publish=True`` and ``publish=False``, alternating, ``--repeats`` times
each, in this process, each run in a fresh journal file; then times ``write_report`` alone
on the last study. Prints the median wall time of each variant and their ratio.

Run from the repository root (on a quiet machine: other CPU work slows torch 10x)::

    python benchmarks/bench_publish.py --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant (default 2)")
    parser.add_argument("--n-trials", type=int, default=30, help="trials per study (default 30)")
    args = parser.parse_args()

    import optuna

    from lrtune._logging import quiet_lightning
    from lrtune.report import write_report
    from lrtune.study import search

    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_file = ROOT / "studies" / "quickstart.yaml"
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        study = None
        for repeat in range(args.repeats):
            for publish in (repeat % 2 == 0, repeat % 2 != 0):
                storage = Path(tmp) / f"run-{repeat}-{publish}.journal"
                start = time.perf_counter()
                study = search(
                    study_file, storage=str(storage), n_trials=args.n_trials, progress=None,
                    publish=publish,
                )  # fmt: skip
                times[publish].append(time.perf_counter() - start)
                print(f"repeat {repeat} publish={publish}: {times[publish][-1]:.1f} s", flush=True)
        assert study is not None
        start = time.perf_counter()
        write_report(study, Path(tmp) / "report.html")
        report_s = time.perf_counter() - start
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"median publish=True {on:.2f} s, publish=False {off:.2f} s, ratio {on / off:.3f}")
    print(f"write_report alone (study of {args.n_trials} trials, warm imports): {report_s:.2f} s")


if __name__ == "__main__":
    main()
