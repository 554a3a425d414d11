"""Cold import time of the API handler module, beside the bare libraries it stands on.

Each sample is a fresh interpreter (nothing cached in ``sys.modules``; the OS file cache is
warm after the first run, as on a Lambda host that reuses its disk). The figure is the time
spent in the import statement alone; the process's whole wall time (interpreter start
included) is reported beside it.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.environment import bench_environment

REPO = Path(__file__).resolve().parent.parent

SUBJECTS = {
    "import functions.app": "import functions.app",
    "import boto3, pynamodb.models, chalice": "import boto3, pynamodb.models, chalice",
}

_TIMED = ("import time as _t; _s = _t.perf_counter(); {statement}; "
          "print(_t.perf_counter() - _s)")


@dataclass
class ImportTiming:
    subject: str
    import_seconds: list[float]
    process_seconds: list[float]

    @property
    def median_import(self) -> float:
        return statistics.median(self.import_seconds)

    @property
    def median_process(self) -> float:
        return statistics.median(self.process_seconds)


def _sample(statement: str) -> tuple[float, float]:
    began = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", _TIMED.format(statement=statement)],
                            cwd=REPO, env=bench_environment(), capture_output=True, text=True,
                            check=True).stdout
    return float(output.strip().splitlines()[-1]), time.perf_counter() - began


def measure_imports(runs: int = 5) -> list[ImportTiming]:
    timings = {subject: ImportTiming(subject, [], []) for subject in SUBJECTS}
    for subject, statement in SUBJECTS.items():
        _sample(statement)  # warm the OS file cache and the .pyc files once, unmeasured
    for _ in range(runs):
        # Interleaved, so a slower moment of the machine weighs on both alike.
        for subject, statement in SUBJECTS.items():
            imported, process = _sample(statement)
            timings[subject].import_seconds.append(imported)
            timings[subject].process_seconds.append(process)
    return list(timings.values())


def heaviest_imports(statement: str = "import functions.app", top: int = 8) -> list[tuple[str, float]]:
    """The modules with the largest own import time (``python -X importtime``)."""
    stderr = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], cwd=REPO,
                            env=bench_environment(), capture_output=True, text=True,
                            check=True).stderr
    own: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        own.append((name, int(self_us) / 1e6))
    return sorted(own, key=lambda item: item[1], reverse=True)[:top]
