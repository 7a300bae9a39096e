#!/usr/bin/env bash
# The tone study (benchmarks/RESULTS.md §13.3): the seven families and vae+acai x 3 seeds on
# `shepard`, latent 64, 16,384 images, one thread, fp32; interpolation scored along training
# (4,096 / 8,192 / 16,384 images), then the linear, kNN and k-means probes at 16,384, then the
# reference encoders. Run from the repository root with repeval installed:
#     bash benchmarks/study_shepard.sh [WORKDIR]        # default runs/shepard
# Every run checkpoints and resumes exactly: run the same command again to continue. About 27
# minutes per seed for the eight families on one core of a 2-core AMD EPYC (Zen 3).
# Afterwards: repeval report --workdir WORKDIR --out docs/study/shepard-cpu.html, and
#             repeval results --workdir WORKDIR --format csv > benchmarks/results/DATE/shepard_study_scores.csv
set -euo pipefail
work=${1:-runs/shepard}
export OMP_NUM_THREADS=1
families=(--encoder baseline --encoder dropout --encoder denoising --encoder vae --encoder aae --encoder vqvae
          --encoder acai --encoder vae+acai)
common=(--dataset shepard --latent-dim 64 --budget 16384 --precision fp32 --threads 1 --workdir "$work")
for seed in 0 1 2; do
    repeval run "${families[@]}" --seed "$seed" "${common[@]}" --task interpolation --along-training
done
for seed in 0 1 2; do
    repeval run "${families[@]}" --seed "$seed" "${common[@]}" --task linear --task knn --task kmeans \
        --set kmeans.restarts=100
done
repeval run --encoder pixels --encoder pca --dataset shepard --task interpolation --task linear --task knn \
    --task kmeans --set kmeans.restarts=100 --threads 1 --workdir "$work"
