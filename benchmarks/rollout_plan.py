"""Rollout benchmark: planning (the dry run) and applying ``crm_contacts`` 1 -> 2 for N customers.

The shipped include folder is copied to a temp folder with N generated customers, each pinned to
``crm_contacts`` version 1 (the shape of the demo's acme). For each N it prints, in seconds:

- plan: ``plan_rollout`` (every instance checked by the loader on its file with the block replaced);
- apply: ``apply_rollout`` through the instance store (lock, ETag, a second loader check, write, history);
- floor: a plain loop doing the same file work without any check: read each file, rename the key, pin the
  version, write it back (PyYAML), i.e. what a rollout costs if nothing were validated.

Run from the repository root::

    .venv/bin/python benchmarks/rollout_plan.py            # N = 100, 1000
    .venv/bin/python benchmarks/rollout_plan.py --sizes 10
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))

from b2b_integrations.instances.history import History  # noqa: E402
from b2b_integrations.instances.rollout import apply_rollout, plan_rollout  # noqa: E402
from b2b_integrations.instances.store import InstanceStore  # noqa: E402


def _include(root: Path, n: int) -> Path:
    include = root / "include"
    shutil.copytree(REPO / "include", include)
    for i in range(n):
        customer = {
            "id": f"bench{i:05d}",
            "name": f"Bench {i}",
            "integrations": {
                "crm_contacts": {
                    "version": "1",
                    "config": {"page_limit": 50 + i % 100},
                    "connections": {"crm_api": "bench_crm", "app_db": "bench_db"},
                }
            },
        }
        (include / "customers" / f"bench{i:05d}.yaml").write_text(yaml.safe_dump(customer), encoding="utf-8")
    return include


def _floor(include: Path) -> float:
    start = time.perf_counter()
    for path in sorted((include / "customers").glob("bench*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        block = data["integrations"]["crm_contacts"]
        block["config"]["page_size"] = block["config"].pop("page_limit")
        block["version"] = "2"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    print("| N | plan (dry run) s | per instance ms | apply s | floor (no checks) s |")
    print("| --- | --- | --- | --- | --- |")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="b2b-rollout-bench-") as tmp:
            include = _include(Path(tmp), n)
            start = time.perf_counter()
            plan = plan_rollout(include, "crm_contacts", "2")
            planned = time.perf_counter() - start
            assert plan.ok and len(plan.items) == n + 1, plan.problems  # + the demo's acme
            store = InstanceStore(include, History(Path(tmp) / "history"))
            start = time.perf_counter()
            outcomes = apply_rollout(store, plan, actor="bench")
            applied = time.perf_counter() - start
            assert all(o.applied for o in outcomes)
            floor_include = _include(Path(tmp) / "floor", n)
            floor = _floor(floor_include)
            per = planned / len(plan.items) * 1000
            print(f"| {n} | {planned:.2f} | {per:.1f} | {applied:.2f} | {floor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
