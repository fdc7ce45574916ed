"""The rollout controller's tick against a growing store: memory after each tick and the peak.

A canary rollout (as in scripts/soak.py) is started on a temporary data directory; then, STEPS
times, another process appends ROWS requests of today (as the flusher does: the memory measured
is the ticking process's alone) and this process ticks TICKS times, printing its resident memory
after each tick and its peak so far. Memory that stays level across the ticks of one step but
rises from step to step follows the rows a tick reads, not the number of ticks.

    PYTHONPATH=src python scripts/tick_growth.py [STEPS] [ROWS] [TICKS]    # default 6 120000 3
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
BATCH = 6000


def grow(data: Path, step: int, rows: int) -> None:
    """Append ``rows`` requests of now in batches, then compact as the flusher would."""
    import pyarrow as pa

    from modelwarden.settings import Settings
    from modelwarden.store.logstore import LogStore
    from modelwarden.store.schema import SCHEMAS

    store = LogStore(Settings(data_dir=data).log_dir)
    schema = SCHEMAS["requests"]
    now = datetime.now(UTC)
    for k in range(rows // BATCH):
        cols = {
            "request_id": [f"r-{step}-{k}-{i}" for i in range(BATCH)],
            "timestamp": [now] * BATCH,
            "plant_id": [f"Plant_{'ABCD'[i % 4]}" for i in range(BATCH)],
            "model_version": [V12 if i % 25 == 0 else V11 for i in range(BATCH)],
            "latency_ms": [200.0 + i % 50 for i in range(BATCH)],
        }
        store.append(
            "requests",
            pa.table(
                {f.name: pa.array(cols.get(f.name, [None] * BATCH), f.type) for f in schema},
                schema=schema,
            ),
        )
    store.compact(["requests"], small_bytes=8 << 20, grace_s=0)


def _vm(key: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith(key))


def main() -> None:
    from modelwarden.governance import registry
    from modelwarden.rollout import controller
    from modelwarden.rollout.plan import Hold, Plan, Step
    from modelwarden.settings import Settings
    from modelwarden.store.state import StateStore

    steps, rows, ticks = (
        int(a) for a in (sys.argv[1:] + ["6", "120000", "3"][len(sys.argv) - 1 :])
    )
    data = Path(tempfile.mkdtemp(prefix="modelwarden-ticks-")) / "warden-data"
    settings = Settings(data_dir=data)
    state = StateStore.at(data)
    registry.add(state, V11, "http://127.0.0.1:9", "tick growth", status="stable")
    registry.add(state, V12, "http://127.0.0.1:9", "tick growth")
    plan = Plan(name="ticks", steps=[Step(weight=20, hold=Hold(duration="48h")), Step(weight=100)])
    controller.start(settings, V12, plan, "tick growth", state=state)
    controller.tick(settings, state=state)  # the imports, out of the figures
    print(f"data {data}; after the first tick on an empty store: RSS {_vm('VmRSS')} MB")
    for step in range(steps):
        subprocess.run(
            [sys.executable, __file__, "--grow", str(data), str(step), str(rows)], check=True
        )
        after = []
        for _ in range(ticks):
            controller.tick(settings, state=state)
            after.append(_vm("VmRSS"))
        print(
            f"{(step + 1) * rows:>9,} rows: RSS after each tick {after} MB, peak {_vm('VmHWM')} MB"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--grow"]:
        grow(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
