"""repeval.lightning.ProbeCallback in a real Lightning training: logged, monitored, BatchNorm untouched."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")


class TinyModule(pl.LightningModule):
    """An autoencoder of 32x32 images with BatchNorm in its encoder."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(1024, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
        self.dec = nn.Linear(8, 1024)
        self.bn_seen: list[bool] = []

    def encode(self, x):
        return self.enc(x)

    def training_step(self, batch, _):
        x, _ = batch
        loss = ((self.dec(self.encode(x)) - x.flatten(1)) ** 2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, _ = batch
        self.log("val/loss", ((self.dec(self.encode(x)) - x.flatten(1)) ** 2).mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def test_probe_callback_logs_is_monitored_and_leaves_batchnorm_alone(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from repeval import data
    from repeval.data.base import to_float
    from repeval.lightning import ProbeCallback

    ds = data.load("digits")
    x_train, x_test = to_float(ds.train.x), to_float(ds.test.x)
    loader = DataLoader(TensorDataset(x_train, ds.train.y), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(x_test, ds.test.y), batch_size=256)
    module = TinyModule()
    probe = ProbeCallback((x_train, ds.train.y), val, tasks=("knn", "linear"), max_examples=500)
    stats_before_probe = []
    original = probe.prober.__call__

    def watched(model, step=None):  # BatchNorm running statistics must not move while probing
        stats_before_probe.append(model.enc[2].running_mean.clone())
        mode = model.training
        model.train()  # even a module left in train mode is probed in eval mode, and its mode restored
        out = original(model, step)
        assert torch.equal(model.enc[2].running_mean, stats_before_probe[-1]) and model.training
        model.train(mode)
        return out

    probe.prober = type("W", (), {"__call__": staticmethod(watched)})()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="probe/knn/accuracy", mode="max")
    trainer = pl.Trainer(max_epochs=2, logger=CSVLogger(tmp_path), callbacks=[probe, checkpoint],
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         num_sanity_val_steps=2, limit_train_batches=5)
    trainer.fit(module, loader, val)
    assert len(probe.history) == 2 and len(stats_before_probe) == 2  # not during the sanity check
    assert checkpoint.best_model_path and checkpoint.best_model_score is not None
    assert float(checkpoint.best_model_score) == pytest.approx(max(h["knn/accuracy"] for h in probe.history), abs=1e-6)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("probe/knn/accuracy")]
    assert [float(r["probe/knn/accuracy"]) for r in logged] == pytest.approx([h["knn/accuracy"] for h in probe.history])
    assert all(0.0 <= float(r["probe/linear/accuracy"]) <= 1.0 for r in logged)
