#!/usr/bin/env bash
# One GPU check: the public route at 250 teachers (configs/routes/public_prior_2600.yaml through `compare`, one
# replicate) and `make bench`'s benchmark with the GPU settings, their figures in one JSON. At most 8 minutes on
# one GPU (each part has its own time limit; a part that runs out is recorded as such, not dropped).
# Usage: bash benchmarks/gpu_check.sh [DATA_DIR] [OUT_DIR]      (default data, runs/gpu_check)
set -uo pipefail
DATA=${1:-data}; OUT=${2:-runs/gpu_check}; PY=${PY:-python}
mkdir -p "$OUT"
$PY -m pate_lightning prepare --data_dir "$DATA" >/dev/null
# the route with its data folder and run folders under $OUT, so a check never reuses or touches runs/routes
sed -e "s#runs/routes/#$OUT/routes/#g" -e "s#^data_dir: .*#data_dir: $DATA#" -e "s#^accelerator: .*#accelerator: gpu#" \
  configs/routes/public_prior_2600.yaml > "$OUT/public_prior_2600.yaml"
started=$(date +%s)
timeout 330 $PY -m pate_lightning compare --routes "$OUT/public_prior_2600.yaml" --replicates 1 --out "$OUT/compare"
route_rc=$?; route_seconds=$(( $(date +%s) - started ))
started=$(date +%s)
timeout 140 $PY -m benchmarks.bench_teachers --accelerator gpu --data_dir "$DATA" --teachers 250 --epochs 2 \
  --gen_teachers 0 --dp_epochs 0 --out "$OUT/bench_gpu.json"
bench_rc=$?; bench_seconds=$(( $(date +%s) - started ))
$PY - "$OUT" "$route_rc" "$route_seconds" "$bench_rc" "$bench_seconds" <<'PY'
import json, sys
from pathlib import Path

import torch

out, route_rc, route_seconds, bench_rc, bench_seconds = Path(sys.argv[1]), *map(int, sys.argv[2:])
def read(path):
    return json.loads(path.read_text()) if path.is_file() else None
results = read(out / "compare/results.json")
figures = {
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU",
    "public_route_250": {"exit_status": route_rc, "seconds": route_seconds,
                         "route": results["routes"][0] if results else None},
    "bench": {"exit_status": bench_rc, "seconds": bench_seconds, "figures": read(out / "bench_gpu.json")},
}
(out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
route = figures["public_route_250"]["route"] or {}
print(f"gpu_check: {figures['device']}; public route {route_seconds} s (exit {route_rc}), student "
      f"{route.get('student_accuracy_mean')} at end-to-end epsilon {route.get('epsilon_end_to_end')}; "
      f"bench {bench_seconds} s (exit {bench_rc}) -> {out / 'gpu_check.json'}")
PY
