#!/usr/bin/env bash
# The paper study continued (benchmarks/RESULTS.md §10 took it to 2^16 images): where along
# training does ACAI overtake the baseline, and what does ACAI's regulariser do to a VAE?
#
#   part 4: MNIST, latent 32, baseline and ACAI x 3 seeds to 2^20 images; linear, kNN and
#           k-means (100 restarts) at every snapshot from 4,096 images (--along-training), then
#           the paper's k-means (1,000 restarts) at 2^20.
#   part 5: vae and vae+acai x 3 seeds on lines at 2^18 images (the interpolation metrics and
#           their details, along training), and on MNIST-32 at 2^20 (the probes, as part 4).
#
# Run from the repository root with repeval installed, MNIST in torchvision layout under DATA:
#     bash benchmarks/study_paper.sh DATA [WORKDIR] [PART...]    # WORKDIR default runs/paper; PART 4 and/or 5
# One thread per process and `--precision auto`: bf16 on a CPU with native bf16 (AVX512-BF16 or
# AMX, read from its flags; every stored run records which), fp32 elsewhere. Every run
# checkpoints and resumes exactly, and a finished run or probe is reused: run the same command
# again, in this or a later session, to continue where it stopped. Two copies of this script
# may share one WORKDIR on two cores only if they never run the same (family, seed) at once:
# give them different parts, or split the seeds with SEEDS="0 1" / SEEDS="2".
# Cost on one core of a 2-core Zen 4 in bf16 (estimated from RESULTS.md §10 and §12.4): ACAI
# about 40 minutes per 2^20, a baseline or VAE 15-20, vae+acai 45; the probes of 9 snapshots
# about 15 minutes per run; a 1,000-restart k-means of 60,000 x 32 latents 4-5 minutes.
# Afterwards: python benchmarks/study_tables.py --workdir WORKDIR --dataset mnist --latent-dim 32,
#             repeval report --workdir WORKDIR --out docs/study/paper-cpu.html, and
#             repeval results --workdir WORKDIR --format csv > benchmarks/results/DATE/paper_study_scores.csv
set -euo pipefail
data=${1:?usage: study_paper.sh DATA [WORKDIR] [PART...]}
work=${2:-runs/paper}
shift $(( $# >= 2 ? 2 : 1 ))
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(4 5)
read -r -a seeds <<< "${SEEDS:-0 1 2}"
claims=${CLAIMS:-}
export OMP_NUM_THREADS=1
mnist=(--dataset mnist --data-dir "$data" --latent-dim 32 --budget "${BUDGET:-1048576}" --precision auto --threads 1
       --workdir "$work")
probes=(--task linear --task knn --task kmeans --set kmeans.restarts=100)

claim() {  # UNIT: true if this copy should run UNIT (no CLAIMS, or the claim is ours)
    [ -z "$claims" ] && return 0
    mkdir -p "$claims" && mkdir "$claims/$1" 2>/dev/null
}

mnist_along_training() {  # FAMILY...: train each to 2^20 with snapshots, probe every snapshot, then k-means x 1,000
    for seed in "${seeds[@]}"; do
        for family in "$@"; do
            claim "mnist-$family-$seed" || continue
            echo "== $(date -u +%FT%TZ) mnist-32 $family seed $seed" >&2
            repeval run --encoder "$family" --seed "$seed" "${mnist[@]}" "${probes[@]}" --along-training
            repeval run --encoder "$family" --seed "$seed" "${mnist[@]}" --task kmeans --set kmeans.restarts=1000
        done
    done
}

for part in "${parts[@]}"; do
    case $part in
        4) mnist_along_training baseline acai ;;
        5)
            for seed in "${seeds[@]}"; do
                for family in vae vae+acai; do
                    claim "lines-$family-$seed" || continue
                    echo "== $(date -u +%FT%TZ) lines $family seed $seed" >&2
                    repeval run --encoder "$family" --seed "$seed" --dataset lines --budget 262144 --precision auto \
                        --threads 1 --workdir "$work" --task interpolation --along-training
                done
            done
            mnist_along_training vae vae+acai ;;
        *) echo "study_paper.sh: unknown part '$part' (give 4 and/or 5)" >&2; exit 2 ;;
    esac
done
echo "== $(date -u +%FT%TZ) done" >&2
