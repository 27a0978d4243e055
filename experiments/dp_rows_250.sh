#!/usr/bin/env bash
# What do DP generators (DP-SGD hybrid, latent statistics) buy end to end at 250 teachers? The rows' exact commands.
# Issue #16 DP rows at 250 teachers: DP-SGD hybrid generator (the public font-prior VAE fine-tuned per shard under
# DP-SGD) at two per-teacher epsilons, PATE selection, Confident-GNMax, supervised student pretrained on font_digits;
# and the `public` family with the same PATE and student settings (like-for-like baseline).
# Needs in $RUN: trained_nets/ (250 classifiers), shard_indices.json, public_vae/ (configs/generators/public_prior.yaml),
# and for the baseline $PUBLIC_POOL: the public family's combined pool (experiments/public_route_250.sh, first 4 commands).
# Usage: RUN=runs/dp4 DATA=data PUBLIC_POOL=runs/full250/synthetic/combined_samples.pt bash experiments/dp_rows_250.sh ROW
#   ROW: fit_eps1 | fit_eps4 | pate_eps1 | pate_eps4 | pate_public | latent_eps1 | latent_control | public_q800 | latent_q800 | pate_public_rep
# Each ROW is one command group, timed; num_queries come from `python -m experiments.dp_route_budget` (end-to-end
# epsilon <= 10 at delta 1e-5: 2,600 for the eps-1 generators and the public ones, 2,100 for eps 4: its curve, rate 0.5 and
# noise 3.843, from `dp_route_budget --generator_report`; a first run at 2,150, budgeted from another rate, gave 10.06).
# latent_*: class statistics of the public encoder's latents released once by the Gaussian mechanism
# (experiments/latent_stats_route.py), sampled through the public decoder; latent_control: the same statistics
# of the public font_digits set (no private data), to show what the release adds.
# *_q800: end-to-end epsilon <= 5 (800 queries; the latent release at epsilon 0.3 leaves room for 800 too).
set -euo pipefail -f  # -f: the trainable list below is not a glob
RUN=${RUN:-runs/dp4}; DATA=${DATA:-data}; PL="python -m pate_lightning"
PUBLIC_POOL=${PUBLIC_POOL:-runs/full250/synthetic/combined_samples.pt}
CPU="--trainer.accelerator cpu --trainer.enable_progress_bar false"
# DP-SGD settings (chosen on teachers 0-15, docs/results/dp_rows_250.md): decoder biases + first decoder layer
# (10,768 parameters per teacher), Poisson rate 120/240, 20 epochs = 40 steps, clip 1, Adam lr 3e-3
DP="--model.init_args.latent_dim 8 --model.init_args.conditional true --model.init_args.generator hybrid
  --model.init_args.trainable [decoder.*.bias,decoder.hidden.0.weight] --model.init_args.lr 0.003
  --data.init_args.batch_size 120 --trainer.max_epochs 20 --trainer.callbacks.init_args.kl_annealing_epochs 0"
# a non-DP look at 16 shards chose the DP settings: declared, so those rows are never scoped end_to_end
TUNED="DP-SGD settings chosen by shard loss on teachers 0-15 (docs/dp_sgd.md)"
PATE="--config configs/pate.yaml --data_dir $DATA --accelerator cpu --query_source synthetic --mechanism confident_gnmax
  --threshold 200 --sigma1 150 --sigma2 40 --student.pretrain font_digits --student.pretrain_epochs 2"

timed() { local t0; t0=$(date +%s); "$@"; echo "[timing] $* : $(( $(date +%s) - t0 )) s"; }
fit() {  # $1: run dir, $2: per-teacher epsilon
  timed $PL fit --config configs/teacher_vae_dp.yaml --data.data_dir "$DATA" --data.run_dir "$1" --ensemble_size 50 $DP \
    --model.init_args.public_vae "$1/public_vae/teacher_vaes/teacher_0/vae_full.pth" --model.init_args.target_epsilon "$2" $CPU
  timed $PL predict --config configs/generators/generate_pate.yaml --data.data_dir "$DATA" --data.run_dir "$1" \
    --data.init_args.pool_size 40 $CPU
  timed $PL combine --run_dir "$1" --percentage 100 --start_id 0 --end_id 249
}

case "$1" in
  fit_eps1) timed fit "$RUN/eps1" 1.0 ;;
  fit_eps4) timed fit "$RUN/eps4" 4.0 ;;
  pate_eps1) timed $PL pate $PATE --run_dir "$RUN/eps1" --num_queries 2600 --settings_chosen_on_private_data "$TUNED" ;;
  pate_eps4) timed $PL pate $PATE --run_dir "$RUN/eps4" --num_queries 2100 --settings_chosen_on_private_data "$TUNED" ;;
  latent_eps1) timed python -m experiments.latent_stats_route --run_dir "$RUN/latent" --data_dir "$DATA" --epsilon 1 \
      --out "$RUN/latent/eps1"
    timed $PL pate $PATE --run_dir "$RUN/latent" --synthetic_samples "$RUN/latent/eps1/combined_samples.pt" --num_queries 2600 ;;
  latent_control) timed python -m experiments.latent_stats_route --run_dir "$RUN/latent_control" --data_dir "$DATA" \
      --source font_digits --out "$RUN/latent_control/pool"
    timed $PL pate $PATE --run_dir "$RUN/latent_control" --synthetic_samples "$RUN/latent_control/pool/combined_samples.pt" \
      --num_queries 2600 ;;
  latent_q800) timed python -m experiments.latent_stats_route --run_dir "$RUN/latent_q800" --data_dir "$DATA" \
      --epsilon 0.3 --out "$RUN/latent_q800/eps03"
    timed $PL pate $PATE --run_dir "$RUN/latent_q800" --synthetic_samples "$RUN/latent_q800/eps03/combined_samples.pt" \
      --num_queries 800 ;;
  public_q800) timed $PL pate $PATE --run_dir "$RUN/public_q800" --synthetic_samples "$PUBLIC_POOL" --num_queries 800 ;;
  pate_public) timed $PL pate $PATE --run_dir "$RUN/public" --synthetic_samples "$PUBLIC_POOL" --num_queries 2600 ;;
  # a replicate (fresh noise, query subset and student; the votes cache of $RUN/public copied in first)
  pate_public_rep) timed $PL pate $PATE --run_dir "$RUN/public_rep" --synthetic_samples "$PUBLIC_POOL" --num_queries 2600 ;;
  *) echo "unknown row $1 (fit_eps1 | fit_eps4 | pate_eps1 | pate_eps4 | pate_public | latent_eps1 | latent_control | public_q800 | latent_q800 | pate_public_rep)" >&2
     exit 2 ;;
esac
