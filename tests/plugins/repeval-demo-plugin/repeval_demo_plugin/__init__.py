"""A plugin for repeval: an MLP autoencoder family, a nearest-centroid probe, a blobs dataset."""
