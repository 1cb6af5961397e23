#!/usr/bin/env bash
# The validation sweep of the defaults set before issue 13 (issue 13, item 4).
#
# One setting moved at a time from the protocol's defaults, seed 2020, 2 threads, one run
# each; every run appends its validation figures (never test) to
# benchmarks/results/tuning-mtrec.jsonl with its tag. The rule, fixed before the runs:
#   - the criterion is validation NDCG@10 (masked, all targets) of the ranking the tables
#     report (``valid["ndcg@10/history"]``: the network plus the item-neighbour channel);
#   - one seed's difference below 0.005 is noise (the 3-seed test sd on loo is 0.006):
#     a setting changes only if it gains more than that, and is then confirmed on seed 2021;
#   - the rating-head settings (SR6, SR7) are judged by validation rating RMSE: taken if it
#     falls by more than 0.005 with NDCG@10 no more than 0.005 lower;
#   - a cheaper setting (fewer seconds of training) within 0.005 of the default is taken
#     for the training-time target, confirmed the same way.
#
# Usage: bash benchmarks/sweep_defaults.sh [loo|random|both|confirm]
#   (loo ~40 min, random ~45 min; confirm ~30 min: seed 2021 for the settings seed 2020 kept)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-both}

seed=2020
run() {
  local protocol=$1 tag=$2
  shift 2
  echo "$(date -u +%FT%TZ) $protocol $tag seed $seed" >&2
  python benchmarks/tune_mtrec.py --protocol "$protocol" --threads 2 --seed "$seed" \
    --tag "$tag" "$@" >/dev/null
}

if [[ $which == loo || $which == both ]]; then
  run loo S0-defaults
  run loo S1-batch64 --set train.batch_size=64
  run loo S2-batch128 --set train.batch_size=128
  run loo S3-lr1e-3 --set train.lr=0.001
  run loo S4-lr6e-3 --set train.lr=0.006
  run loo S5-dropout0.2 --set model.dropout=0.2
  run loo S6-dropout0.5 --set model.dropout=0.5
  run loo S7-dim128 --set model.dim=128
  run loo S8-layers1 --set model.layers=1
  run loo S9-epochs40-pat6 --set train.epochs=40 --set train.patience=6
fi
if [[ $which == random || $which == both ]]; then
  run random SR0-defaults
  run random SR1-layers0 --set model.layers=0
  run random SR2-batch64 --set train.batch_size=64
  run random SR3-order-time --set train.history_order=time
  run random SR4-window8 --set train.future_window=8
  run random SR5-history50 --set model.max_history=50
  # The rating head (validation RMSE): every labelled target trains it, or a larger weight.
  run random SR6-aux-all --set train.aux_targets=all
  run random SR7-rating-weight1 \
    --set 'train.task_weights={"engagement": 1.0, "like": 0.2, "rating": 1.0, "category": 0.2}'
fi
if [[ $which == confirm ]]; then
  # Seed 2021 for every setting seed 2020 kept under the rule above (the defaults again first).
  seed=2021
  run loo C0-defaults
  run loo C5-dropout0.2 --set model.dropout=0.2
  run loo C8-layers1 --set model.layers=1
  run loo C4-lr6e-3 --set train.lr=0.006
  run random CR0-defaults
  run random CR5-history50 --set model.max_history=50
  run random CR1-layers0 --set model.layers=0
  run random CR4-window8 --set train.future_window=8
  run random CR3-order-time --set train.history_order=time
fi
