"""repeval: how useful is an encoder's latent space for downstream work?

Trains the autoencoder families of the ACAI paper (Berthelot et al., 2018), freezes them,
extracts their latents and probes them (linear classifier, k-means clustering accuracy,
kNN accuracy, the synthetic lines interpolation benchmark). Scores are stored with their
provenance, rendered into HTML reports and gated in CI.

From Python (the same functions the command line calls)::

    import repeval
    results = repeval.probe(z_train, y_train, z_test, y_test, tasks=("linear", "knn"))
    results = repeval.evaluate("acai", "digits", budget=4096, settings={"kmeans": {"restarts": 100}})
    results.to_dataframe()            # long form; "wide" and "summary" too
    repeval.Probe("knn").fit(Z, y).score(Z_test, y_test)

``import repeval`` loads none of torch, scikit-learn, faiss or pandas: the names below are
imported on first use.
"""

__version__ = "0.1.0"

_LAZY = {
    "probe": "repeval.api", "evaluate": "repeval.api", "load_results": "repeval.api", "Probe": "repeval.api",
    "Prober": "repeval.api", "Results": "repeval.frame", "UserError": "repeval.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'repeval' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
