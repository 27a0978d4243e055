#!/usr/bin/env bash
# How do the generator families compare at 250 teachers? Each family's row through the CLI stages.
# The generator-families table at 250 teachers (issue #15): each row through the CLI stages
# (fit -> predict -> combine -> pate), every stage timed into $RUN/<row>/stage_seconds.tsv.
# Reuses the 250 classifiers, the shard partition, the public font-prior VAE and the `public` family's
# teacher dirs from $SRC (read only; linked, never written). Then:
#   python experiments/families_250_table.py --run $RUN   (JSON + markdown under docs/results/)
# Usage: SRC=runs/full250 RUN=runs/families250 DATA=data bash experiments/families_250.sh hybrid public_filters ...
# Rows: hybrid | hybrid_pate (needs hybrid's fit) | public_filters | per_teacher_conditional
#       hybrid_again / public_filters_again: that row's VAEs, generated with teacher filters and voted on afresh
#       into $RUN/<row>$TAG (other CLASS_COUNTS, NUM_QUERIES or STUDENT_ARGS); each is a new private run
set -euo pipefail
SRC=$(realpath "${SRC:-runs/full250}"); RUN=$(realpath -m "${RUN:-runs/families250}"); DATA=${DATA:-data}
PL="python -m pate_lightning"
CPU="--trainer.accelerator cpu --trainer.enable_progress_bar false"
HYBRID_EPOCHS=${HYBRID_EPOCHS:-30}         # fine-tuning passes over each 240-image shard
PATE_POOL=${PATE_POOL:-40}                 # candidates per teacher, PATE selection (as the public route)
# Teacher filters: candidates asked per class of each teacher's conditional decoder (475 per teacher). Even
# requests (20 per class) kept 2% of the 4s, 8s and 9s against 12% of the rest (a 10-teacher probe, hybrid and
# public alike: the teacher calls the decoder's 4 a 9 and so on), so those classes are asked for more often.
CLASS_COUNTS=${CLASS_COUNTS:-[20,20,20,25,100,30,15,25,120,100]}
SUBSET=${SUBSET:-49}                       # per_teacher_conditional: VAEs for teachers 0..SUBSET only
PER_TEACHER_EPOCHS=${PER_TEACHER_EPOCHS:-30}
NUM_QUERIES=${NUM_QUERIES:-1500}         # asked: a random subset of the kept candidates (all, if fewer)
# Confident-GNMax as Papernot et al. 2018 for MNIST; supervised student pretrained on public font renders
PATE_ARGS="--query_source synthetic --mechanism confident_gnmax --threshold 200 --sigma1 150 --sigma2 40
  --student.method supervised --student.architecture small_cnn --student.pretrain font_digits --student.pretrain_epochs 2
  ${STUDENT_ARGS:-}"

timed() {  # timed ROW STAGE command...: runs it, appends "STAGE seconds" to the row's stage_seconds.tsv
  local row=$1 stage=$2; shift 2
  local started; started=$(date +%s.%N)
  "$@"
  echo -e "$stage\t$(python -c "print(round($(date +%s.%N) - $started, 1))")" >> "$RUN/$row/stage_seconds.tsv"
}

prepare_row() {  # the row's run dir with the shard partition; stage_seconds.tsv is appended to (last line wins)
  local row=$1
  mkdir -p "$RUN/$row"
  cp "$SRC/shard_indices.json" "$RUN/$row/shard_indices.json"
}

filters() {  # predict with teacher filters (the guide's thresholds), teacher ids as JSON
  local row=$1 ids=$2
  timed "$row" generate $PL predict --config configs/generate.yaml --data.data_dir "$DATA" --data.run_dir "$RUN/$row" \
    --trainer.callbacks.init_args.teachers_dir "$SRC/trained_nets" --data.class_counts "$CLASS_COUNTS" --data.teacher_ids "$ids" $CPU
}

pate_selection() {
  local row=$1
  timed "$row" generate $PL predict --config configs/generators/generate_pate.yaml --data.data_dir "$DATA" \
    --data.run_dir "$RUN/$row" --data.pool_size "$PATE_POOL" $CPU
}

combine_and_vote() {  # pool every teacher's kept samples; vote on up to NUM_QUERIES of them (none kept: no vote)
  local row=$1 kept
  timed "$row" combine $PL combine --run_dir "$RUN/$row" --percentage 100
  kept=$(python -c "import json; print(json.load(open('$RUN/$row/synthetic/combined_metadata.json'))['num_samples'])")
  if [ "$kept" -gt 0 ]; then
    timed "$row" pate $PL pate --config configs/pate.yaml --run_dir "$RUN/$row" --teachers_dir "$SRC/trained_nets" \
      --data_dir "$DATA" --accelerator cpu --num_queries $(( kept < NUM_QUERIES ? kept : NUM_QUERIES )) $PATE_ARGS
  fi
}

all_teachers="[$(seq -s, 0 249)]"
for row in "$@"; do
  case $row in
    hybrid)
      prepare_row hybrid
      [ -f "$RUN/hybrid/teacher_vaes/teacher_249/vae_full.pth" ] || timed hybrid fit $PL fit --config configs/generators/hybrid.yaml --data.data_dir "$DATA" --data.run_dir "$RUN/hybrid" \
        --model.init_args.public_vae "$SRC/public_vae/teacher_vaes/teacher_0/vae_full.pth" \
        --trainer.max_epochs "$HYBRID_EPOCHS" $CPU
      filters hybrid "$all_teachers"; combine_and_vote hybrid ;;
    hybrid_pate)
      prepare_row hybrid_pate; ln -sfn "$RUN/hybrid/teacher_vaes" "$RUN/hybrid_pate/teacher_vaes"
      pate_selection hybrid_pate; combine_and_vote hybrid_pate ;;
    hybrid_again|public_filters_again)
      from=${row%_again}; again="$from${TAG:?$row needs TAG}"
      prepare_row "$again"; ln -sfn "$(realpath "$RUN/$from/teacher_vaes")" "$RUN/$again/teacher_vaes"
      filters "$again" "$all_teachers"; combine_and_vote "$again" ;;
    public_filters)
      prepare_row public_filters; ln -sfn "$SRC/teacher_vaes" "$RUN/public_filters/teacher_vaes"
      filters public_filters "$all_teachers"; combine_and_vote public_filters ;;
    per_teacher_conditional)
      prepare_row per_teacher_conditional
      subset="[$(seq -s, 0 "$SUBSET")]"
      timed per_teacher_conditional fit $PL fit --config configs/generators/per_teacher_conditional.yaml --data.data_dir "$DATA" \
        --data.run_dir "$RUN/per_teacher_conditional" --data.teacher_ids "$subset" \
        --trainer.max_epochs "$PER_TEACHER_EPOCHS" --trainer.callbacks.init_args.kl_annealing_epochs 10 $CPU
      filters per_teacher_conditional "$subset"; combine_and_vote per_teacher_conditional
      # the picture: 80 raw candidates of teacher 0 (8 per class), before any filter (none may survive them)
      mkdir -p "$RUN/per_teacher_picture/teacher_vaes"; cp "$SRC/shard_indices.json" "$RUN/per_teacher_picture/"
      ln -sfn "$RUN/per_teacher_conditional/teacher_vaes/teacher_0" "$RUN/per_teacher_picture/teacher_vaes/teacher_0"
      $PL predict --config configs/generate.yaml --data.data_dir "$DATA" --data.run_dir "$RUN/per_teacher_picture" \
        --trainer.callbacks.init_args.teachers_dir "$SRC/trained_nets" --data.class_counts "[8,8,8,8,8,8,8,8,8,8]" \
        --data.latent_mixing 0 --data.latent_noise 0 --data.teacher_ids "[0]" \
        --trainer.callbacks.init_args.save_grid true --overwrite true $CPU ;;
    *) echo "unknown row $row (hybrid | hybrid_again | hybrid_pate | public_filters | public_filters_again | per_teacher_conditional)" >&2; exit 2 ;;
  esac
done
