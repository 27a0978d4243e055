#!/usr/bin/env bash
# Issue #14 rows (a) and (b) at 250 teachers, papers' protocol, FixMatch student, private (unseeded) noise.
# Usage: RUN=runs/full250 DATA=data bash experiments/student_rows_250.sh   (results: docs/measurements.md)
set -euo pipefail
RUN=${RUN:-runs/full250}; DATA=${DATA:-data}; PL="python -m pate_lightning"
COMMON="--config configs/pate.yaml --run_dir $RUN --data_dir $DATA --accelerator cpu --protocol papers"
FIX="--student.method fixmatch --student.architecture small_cnn --student.epochs 40 --student.batch_size 32 \
  --student.mu 7 --student.lr 0.003 --student.ema_decay 0.99 --student.cosine true --student.val_fraction 0"
$PL pate $COMMON --mechanism lnmax --gamma 0.05 --num_queries 100 $FIX
$PL pate $COMMON --mechanism confident_gnmax --threshold 200 --sigma1 150 --sigma2 40 --num_queries 500 $FIX
