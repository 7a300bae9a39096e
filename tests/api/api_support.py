"""Helpers of the Python API tests (a module of its own: conftest names clash across folders)."""

from __future__ import annotations


def scores(rows) -> dict:
    """(encoder, dataset, latent_dim, task, metric, canonical settings) -> value of score rows."""
    from repeval.jsonio import canonical_json

    return {(r["encoder"], r["dataset"], r["latent_dim"], r["task"], r["metric"], canonical_json(r["settings"])):
            r["value"] for r in rows}
