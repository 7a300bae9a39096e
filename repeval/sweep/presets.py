"""Sweep presets: the paper's grids by name (``repeval sweep --preset NAME``).

Each preset is a list of grid groups (:mod:`repeval.sweep.grid`), written out in
``docs/protocol.md`` §10 with the configurations of §3.9 and the protocols of §4 and §5.
``all-learned`` stands for every registered learned family (the seven of the paper in a
plain install), so a family added by a plugin joins the paper's grid without an edit here.
The latent size is left to the family where the paper does that (lines: 64, VQ-VAE 256).
Options on the command line replace a preset's keys, e.g. ``--preset paper --seed 0`` or
``--preset paper-table2 --dataset svhn`` (the cheaper ``train`` split instead of train+extra).
"""

from __future__ import annotations

from dataclasses import dataclass

from repeval.devices import PAPER_BUDGET
from repeval.registry import Registry
from repeval.sweep.grid import Group

SEEDS = [0, 1, 2]  # the paper reports mean ± std over at least three runs (docs/protocol.md §4.6)
# (dataset, latent sizes) of the downstream tables (docs/protocol.md §3.9, §5.4); SVHN trains on
# train + extra as the paper
IMAGE_CELLS = (("mnist", [32, 256]), ("svhn-extra", [32, 256]), ("cifar10", [256, 1024]))
CLUSTER_CELLS = (("mnist", [32, 256]), ("svhn-extra", [32, 256]))  # Table 3 has no CIFAR-10 row (§5.5)


@dataclass(frozen=True)
class Preset:
    """A named grid: ``groups`` build its groups (a function, so that each call is fresh)."""

    name: str
    summary: str
    groups: tuple[Group, ...]
    runs_note: str = ""

    def build(self) -> list[Group]:
        return [Group(axes={k: list(v) for k, v in g.axes.items()}, tasks=list(g.tasks), hparams=dict(g.hparams),
                      settings=dict(g.settings), origin=f"--preset {self.name}") for g in self.groups]


PRESETS: Registry[Preset] = Registry("preset", "repeval.presets", "`repeval sweep --help` lists them.")


def register(preset: Preset) -> Preset:
    return PRESETS.register(preset)


def _group(dataset: str, latent_dims, tasks: list[str], latent: str | None = None) -> Group:
    axes = {"encoder": ["all-learned"], "dataset": [dataset], "latent_dim": list(latent_dims), "seed": list(SEEDS),
            "budget": [PAPER_BUDGET]}
    if latent is not None:
        axes["latent"] = [latent]
    return Group(axes=axes, tasks=tasks)


TABLE1 = Preset("paper-table1", "Table 1: the lines benchmark (mean distance, smoothness), every family at its "
                "paper latent size, 3 seeds", (_group("lines", [None], ["interpolation"]),))
TABLE2 = Preset("paper-table2", "Table 2: single-layer classifiers (online, as the paper, and on frozen latents) "
                "on MNIST 32/256, SVHN 32/256, CIFAR-10 256/1024, 3 seeds",
                tuple(_group(d, dims, ["linear"]) for d, dims in IMAGE_CELLS))
# the paper clustered the VAE's random sample (docs/protocol.md §5.2); a family without a
# `sample` latent uses its default
TABLE3 = Preset("paper-table3", "Table 3: k-means clustering accuracy on MNIST and SVHN at 32/256, 3 seeds "
                "(VAE: the random sample, as the paper)",
                tuple(_group(d, dims, ["kmeans"], latent="sample") for d, dims in CLUSTER_CELLS))
PAPER = Preset("paper", "the whole paper grid: every family x (MNIST 32/256, SVHN 32/256, CIFAR-10 256/1024, "
               "lines) x 3 seeds, with the probes of Tables 1-3",
               (*TABLE1.groups, *TABLE2.groups, *TABLE3.groups,
                _group("cifar10", [256, 1024], ["kmeans"], latent="sample")))
