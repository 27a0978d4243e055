#!/bin/bash
# Times `fit --config configs/teacher_classifier.yaml` for all 250 teachers on one GPU at several
# ensemble sizes (the GPU default for the classifier stage is chosen from this), and checks the
# teachers learned (median test accuracy). Usage: bash benchmarks/gpu_classifiers.sh DATA_DIR SIZES...
set -u
data_dir=$1; shift
for k in "$@"; do
  run_dir=$(mktemp -d)
  start=$(date +%s.%N)
  python3 -m pate_lightning fit --config configs/teacher_classifier.yaml --data.data_dir "$data_dir" \
      --data.run_dir "$run_dir" --trainer.accelerator gpu --ensemble_size "$k" \
      --trainer.enable_progress_bar false 2>&1 | grep -E "Error|error:" | tail -3
  end=$(date +%s.%N)
  python3 - "$run_dir" "$k" "$start" "$end" <<'PY'
import glob, json, statistics, sys
run_dir, k, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
acc = [json.load(open(f))["test_accuracy"] for f in glob.glob(f"{run_dir}/trained_nets/*/report.json")]
median = statistics.median(acc) if acc else float("nan")
print(f"ensemble_size={k}: {len(acc)} classifiers x 20 epochs in {end - start:.1f} s, median test accuracy {median:.4f}", flush=True)
PY
  rm -rf "$run_dir"
done
