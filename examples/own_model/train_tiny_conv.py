"""Train TinyConv on scikit-learn's digits and save its weights as safetensors (your own code, no repeval).

    python examples/own_model/train_tiny_conv.py --out tiny_conv.safetensors
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tiny_conv import build

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="tiny_conv.safetensors")
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

digits = load_digits()  # 8x8 images, values 0-16; the same train split as repeval's `digits`
train, _ = train_test_split(digits.images, test_size=0.3, random_state=0, stratify=digits.target)
x = torch.from_numpy(np.asarray(train, np.float32)[:, None] / 8.0 - 1.0)  # [-1, 1]
x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)

torch.manual_seed(0)
model = build(latent_dim=32)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(args.epochs):
    for batch in torch.randperm(len(x)).split(64):
        loss = F.mse_loss(model(x[batch]), x[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: reconstruction MSE {loss.item():.4f}")
save_file(model.state_dict(), args.out)
print(f"wrote {args.out}")
