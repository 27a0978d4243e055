#!/usr/bin/env bash
# Hybrid + teacher filters at 250 teachers, student with rehearsal (#15's hybrid target).
# Reuses the pool of families_250.sh's run e (hybrid_again: the hybrid VAEs generated afresh with teacher
# filters; its synthetic/ and votes cache are copied, never written), asks 1,500 of its 7,951 kept samples
# and trains run e's student (ucstub, 20 epochs, augmentation, pretrained 4 epochs on font_digits) with
# --student.pretrain_mix 1.0: one public image kept per answered query after pretraining.
# Usage: POOL=/work/runs/families4/hybrid_e RUN=/work/runs/lead/hybrid_f TEACHERS=.../trained_nets DATA=data \
#          bash experiments/hybrid_rehearsal_250.sh
set -euo pipefail
mkdir -p "$RUN/pate"
cp -r "$POOL/synthetic" "$POOL/shard_indices.json" "$RUN/"
cp "$POOL/pate/votes_synthetic.pt" "$RUN/pate/"   # the cache key checks the teachers and queries; new rows are voted
/usr/bin/time -v python -m pate_lightning pate --config configs/pate.yaml --run_dir "$RUN" --teachers_dir "$TEACHERS" \
  --data_dir "$DATA" --accelerator cpu --num_queries 1500 \
  --query_source synthetic --mechanism confident_gnmax --threshold 200 --sigma1 150 --sigma2 40 \
  --student.method supervised --student.architecture ucstub --student.epochs 20 --student.lr 0.001 --student.batch_size 64 \
  --student.val_fraction 0 --student.augment true --student.pretrain font_digits --student.pretrain_epochs 4 --student.pretrain_mix 1.0
