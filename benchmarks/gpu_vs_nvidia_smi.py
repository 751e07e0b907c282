"""Compare `tuneterm gpu --json` with `nvidia-smi` on a GPU machine (issue 3: "compare against
nvidia-smi and keep the comparison under benchmarks/").

    python benchmarks/gpu_vs_nvidia_smi.py [--out benchmarks/data/gpu_vs_nvidia_smi.json]

For each GPU it prints name, memory total/used, utilisation, temperature, power, driver and
compute capability from both sources and flags differences beyond a small tolerance (memory
moves between the two reads, so used memory is compared within 256 MiB).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FIELDS = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,driver_version,compute_cap"


def smi() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise SystemExit("nvidia-smi not found: run this on a GPU machine")
    out = subprocess.run([exe, f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return [dict(zip(FIELDS.split(","), (c.strip() for c in row))) for row in csv.reader(io.StringIO(out)) if row]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "data" / "gpu_vs_nvidia_smi.json"))
    args = ap.parse_args()
    from tuneterm.plan.gpu import probe

    prof = probe().to_dict()
    rows = []
    ok = True
    for s, g in zip(smi(), prof["gpus"]):
        checks = {
            "name": (s["name"], g["name"], s["name"] == g["name"]),
            "memory_total_mib": (float(s["memory.total"]), g["memory_total_gib"] * 1024,
                                 abs(float(s["memory.total"]) - g["memory_total_gib"] * 1024) <= 1),
            "memory_used_mib": (float(s["memory.used"]), g["memory_used_gib"] * 1024,
                                abs(float(s["memory.used"]) - g["memory_used_gib"] * 1024) <= 256),
            "temperature_c": (s["temperature.gpu"], g["temperature_c"], str(g["temperature_c"]) == s["temperature.gpu"]),
            "driver": (s["driver_version"], prof["driver_version"], s["driver_version"] == prof["driver_version"]),
            "compute_capability": (s["compute_cap"], g["compute_capability"], s["compute_cap"] == g["compute_capability"]),
            "power_w": (s["power.draw"], g["power_w"], True),  # instantaneous: shown, not compared
            "utilization_pct": (s["utilization.gpu"], g["utilization_pct"], True),
        }
        for k, (a, b, same) in checks.items():
            print(f"GPU {s['index']} {k:20} nvidia-smi={a!s:24} tuneterm={b!s:24} {'ok' if same else 'DIFFERS'}")
            ok &= same
        rows.append({"index": s["index"], "checks": {k: {"nvidia_smi": a, "tuneterm": b, "match": same} for k, (a, b, same) in checks.items()}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"gpus": rows, "all_match": ok}, indent=2, default=str) + "\n")
    print(f"wrote {args.out}; all match: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
