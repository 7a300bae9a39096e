#!/usr/bin/env bash
# The text study (benchmarks/RESULTS.md §14.3): the seven families and vae+acai x 3 seeds on
# `clock`, latent 64, 2^21 images, one thread, fp32; interpolation scored along training (every
# power of two from 4,096 images), then the linear, kNN and k-means probes at 2^21, then the
# reference encoders. The budget: a baseline's reconstructions of test strings are 0 % valid at
# 2^16 images, 0 % at 2^18 and 46 % at 2^20 (1.5 % of characters wrong), so 2^21 is the first
# power of two where they can be mostly valid strings; the snapshots show where along training.
# Run from the repository root with repeval installed:
#     bash benchmarks/study_clock.sh [WORKDIR]        # default runs/clock
# Every run checkpoints and resumes exactly: run the same command again to continue. A baseline
# trains at about 5,000 strings/s on one core of a 2-core AMD EPYC (Zen 3): 7 minutes per 2^21.
# Afterwards: repeval report --workdir WORKDIR --out docs/study/clock-cpu.html, and
#             repeval results --workdir WORKDIR --format csv > benchmarks/results/DATE/clock_study_scores.csv
set -euo pipefail
work=${1:-runs/clock}
export OMP_NUM_THREADS=1
families=(--encoder baseline --encoder dropout --encoder denoising --encoder vae --encoder aae --encoder vqvae
          --encoder acai --encoder vae+acai)
common=(--dataset clock --latent-dim 64 --budget 2097152 --precision fp32 --threads 1 --workdir "$work")
for seed in 0 1 2; do
    repeval run "${families[@]}" --seed "$seed" "${common[@]}" --task interpolation --along-training
done
for seed in 0 1 2; do
    repeval run "${families[@]}" --seed "$seed" "${common[@]}" --task linear --task knn --task kmeans \
        --set kmeans.restarts=100
done
repeval run --encoder pixels --encoder pca --dataset clock --task interpolation --task linear --task knn \
    --task kmeans --set kmeans.restarts=100 --threads 1 --workdir "$work"
