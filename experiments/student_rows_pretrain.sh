#!/usr/bin/env bash
# Which student variant, with public pretraining, scores best on the real-query rows? One pate run per variant.
# Issue #14 rows (a) and (b) with public pretraining of the student (font_digits, never MNIST), papers' protocol,
# 250 teachers, private (unseeded) noise. Each variant runs in its own run dir on a copy of cached votes, so
# voting is not redone and every report.json holds one run. Results: docs/results/student_rows_pretrain.md.
# Usage: RUN=runs/student4 VOTES=runs/rows_merged/pate/votes_mnist_test_papers.pt \
#        TEACHERS=runs/full250/trained_nets DATA=data bash experiments/student_rows_pretrain.sh VARIANT [VARIANT ...]
# (without VOTES, the first run of each dir counts the votes: 250 teachers x 500 queries, a few CPU-minutes)
set -euo pipefail
RUN=${RUN:-runs/student4}; DATA=${DATA:-data}; TEACHERS=${TEACHERS:-runs/full250/trained_nets}; VOTES=${VOTES:-}
PL="python -m pate_lightning"
COMMON="--config configs/pate.yaml --teachers_dir $TEACHERS --data_dir $DATA --accelerator cpu --protocol papers"
A="--mechanism lnmax --gamma 0.05 --num_queries 100"
B="--mechanism confident_gnmax --threshold 200 --sigma1 150 --sigma2 40 --num_queries 500"
FIX="--student.method fixmatch --student.architecture small_cnn --student.batch_size 32 --student.mu 7 \
  --student.ema_decay 0.99 --student.cosine true --student.val_fraction 0"
SUP="--student.method supervised --student.architecture small_cnn --student.batch_size 32 --student.augment true \
  --student.val_fraction 0 --student.lr 0.001 --student.epochs 30"
PT="--student.pretrain font_digits"

args_of() {  # variant name -> its arguments (row, student method, levers)
  case "$1" in
    a_pt2_fix40|a_pt2_fix40_r*)   echo "$A $FIX $PT --student.pretrain_epochs 2 --student.epochs 40 --student.lr 0.003" ;;
    b_pt2_fix40|b_pt2_fix40_r*)   echo "$B $FIX $PT --student.pretrain_epochs 2 --student.epochs 40 --student.lr 0.003" ;;
    a_pt2_sup)     echo "$A $SUP $PT --student.pretrain_epochs 2" ;;
    b_pt2_sup)     echo "$B $SUP $PT --student.pretrain_epochs 2" ;;
    b_pt2_fix120|b_pt2_fix120_r*) echo "$B $FIX $PT --student.pretrain_epochs 2 --student.epochs 120 --student.lr 0.003" ;;
    a_pt2_fix120|a_pt2_fix120_r*) echo "$A $FIX $PT --student.pretrain_epochs 2 --student.epochs 120 --student.lr 0.003" ;;
    b_pt2_fix20)   echo "$B $FIX $PT --student.pretrain_epochs 2 --student.epochs 20 --student.lr 0.003" ;;
    b_pt3_fix40)   echo "$B $FIX $PT --student.pretrain_epochs 3 --student.epochs 40 --student.lr 0.003" ;;
    b_pt2_fix40_lr1) echo "$B $FIX $PT --student.pretrain_epochs 2 --student.epochs 40 --student.lr 0.001" ;;
    b_pt2_fix40_el5) echo "$B $FIX $PT --student.pretrain_epochs 2 --student.epochs 40 --student.lr 0.003 --student.elastic 0.5" ;;
    a_pt2_fix40_el5) echo "$A $FIX $PT --student.pretrain_epochs 2 --student.epochs 40 --student.lr 0.003 --student.elastic 0.5" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

for variant in "$@"; do
  extra=$(args_of "$variant")
  dir="$RUN/$variant"; mkdir -p "$dir/pate"
  if [[ -n "$VOTES" && ! -f "$dir/pate/votes_mnist_test_papers.pt" ]]; then cp "$VOTES" "$dir/pate/"; fi
  # GNU time: wall and CPU seconds of the whole command (votes from the cache, pretraining, student)
  /usr/bin/time -f "$variant wall %e s user %U s sys %S s" -a -o "$RUN/times.txt" \
    $PL pate $COMMON --run_dir "$dir" $extra > "$dir/log.txt" 2>&1
  tail -n 1 "$RUN/times.txt"
done
