"""repeval: how useful is an encoder's latent space for downstream work?

Trains the autoencoder families of the ACAI paper (Berthelot et al., 2018), freezes them,
extracts their latents and probes them (linear classifier, k-means clustering accuracy,
kNN accuracy, the synthetic lines interpolation benchmark). Scores are stored with their
provenance, rendered into HTML reports and gated in CI.

Heavy modules (torch, faiss, sklearn) are imported inside functions so that the command
line starts quickly.
"""

__version__ = "0.1.0"
