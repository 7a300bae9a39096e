#!/usr/bin/env bash
# The tone study's open question (benchmarks/RESULTS.md §13.3): at 16,384 images no VAE carries
# the pitch, so "does ACAI's regulariser help the VAE?" had no budget to be asked at. Here `vae`
# and `vae+acai` x 3 seeds train on `shepard` (latent 64) to 2^17 images, interpolation scored at
# every power of two from 4,096 (--along-training), then the linear, kNN and k-means probes at
# 2^17. One thread per process, `--precision auto` (bf16 on a CPU with native bf16).
# Run from the repository root with repeval installed:
#     bash benchmarks/study_shepard_vae.sh [WORKDIR]          # default runs/shepard-vae
# Every run checkpoints and resumes exactly: run the same command again to continue. Two copies
# may share a WORKDIR if they share CLAIMS=DIR too (each (family, seed) unit is claimed by one
# copy with an atomic mkdir under DIR; remove DIR to let a later session take up claimed units).
# Afterwards: python benchmarks/study_tables.py --workdir WORKDIR --dataset shepard --latent-dim 64
#             --metrics interpolation:endpoint_error,interpolation:smoothness --pair vae,vae+acai
set -euo pipefail
work=${1:-runs/shepard-vae}
claims=${CLAIMS:-}
export OMP_NUM_THREADS=1
common=(--dataset shepard --latent-dim 64 --budget "${BUDGET:-131072}" --precision auto --threads 1 --workdir "$work")
for seed in 0 1 2; do
    for family in vae vae+acai; do
        if [ -n "$claims" ]; then mkdir -p "$claims"; mkdir "$claims/shepard-$family-$seed" 2>/dev/null || continue; fi
        echo "== $(date -u +%FT%TZ) shepard $family seed $seed" >&2
        repeval run --encoder "$family" --seed "$seed" "${common[@]}" --task interpolation --along-training
        repeval run --encoder "$family" --seed "$seed" "${common[@]}" --task linear --task knn --task kmeans \
            --set kmeans.restarts=100
    done
done
echo "== $(date -u +%FT%TZ) done" >&2
