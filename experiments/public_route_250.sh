#!/usr/bin/env bash
# The end-to-end route at 250 teachers (issue #15): public font-prior VAE + PATE selection + FixMatch student.
# Needs the 250 classifiers in $RUN/trained_nets (fit --config configs/teacher_classifier.yaml --data.run_dir $RUN).
# Usage: RUN=runs/full250 DATA=data bash experiments/public_route_250.sh   (measured times in docs/measurements.md)
set -euo pipefail
RUN=${RUN:-runs/full250}; DATA=${DATA:-data}; PL="python -m pate_lightning"
CPU="--trainer.accelerator cpu --trainer.enable_progress_bar false"
$PL fit --config configs/generators/public_prior.yaml --data.data_dir "$DATA" --data.run_dir "$RUN/public_vae" \
  --trainer.max_epochs 10 $CPU
$PL fit --config configs/generators/public.yaml --data.data_dir "$DATA" --data.run_dir "$RUN" \
  --model.init_args.public_vae "$RUN/public_vae/teacher_vaes/teacher_0/vae_full.pth" $CPU
$PL predict --config configs/generators/generate_pate.yaml --data.data_dir "$DATA" --data.run_dir "$RUN" \
  --data.init_args.pool_size 40 $CPU
$PL combine --run_dir "$RUN" --percentage 100 --start_id 0 --end_id 249
$PL pate --config configs/pate.yaml --run_dir "$RUN" --data_dir "$DATA" --accelerator cpu \
  --query_source synthetic --mechanism confident_gnmax --threshold 200 --sigma1 150 --sigma2 40 --num_queries 1500 \
  --student.method fixmatch --student.architecture small_cnn --student.epochs 40 --student.batch_size 32 --student.mu 7 \
  --student.lr 0.003 --student.ema_decay 0.99 --student.cosine true --student.val_fraction 0
