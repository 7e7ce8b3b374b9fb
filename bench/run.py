"""Run every benchmark in this folder and print machine-readable results.

Each ``bench_*.py`` module exposes ``run(quick: bool) -> list[dict]``; every
result names its figure, the baseline measured in the same run, and their
ratio, because these machines are shared and noisy: absolute numbers move,
ratios against a same-run baseline mean something.

Usage: ``python bench/run.py [--quick] [--only NAME] [--out FILE]``.
Prints one JSON object per result, then a short table; writes all results
to ``bench-results/results.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so msgspec can resolve its annotations
    spec.loader.exec_module(module)
    return module


def main() -> int:
    """Run the benchmarks and report; exit 1 if any benchmark crashed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    parser.add_argument("--only", help="run only bench_<ONLY>.py")
    parser.add_argument("--out", type=Path, default=Path("bench-results/results.json"))
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    failed = False
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem != f"bench_{args.only}":
            continue
        started = time.perf_counter()
        try:
            for result in _load(path).run(quick=args.quick):
                result.setdefault("bench", path.stem.removeprefix("bench_"))
                results.append(result)
                print(json.dumps(result), flush=True)
        except Exception as e:  # report the crash, keep running the others
            failed = True
            print(json.dumps({"bench": path.stem, "error": repr(e)}), flush=True)
        print(f"# {path.stem}: {time.perf_counter() - started:.1f}s", file=sys.stderr)

    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(results)
    return 1 if failed else 0


def _print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'figure':<44} {'value':>14} {'baseline':>14} {'ratio':>8}  target")
    for r in results:
        print(
            f"{r['name']:<44} {_fmt(r.get('value'))} {_fmt(r.get('baseline'))} "
            f"{r.get('ratio', float('nan')):>8.2f}  {r.get('target', '')}"
        )


def _fmt(value: Any) -> str:
    return f"{value:>14,.1f}" if isinstance(value, int | float) else f"{value!s:>14}"


if __name__ == "__main__":
    raise SystemExit(main())
