"""Forgetting measured inside a plain PyTorch training loop with `forgetting.Recorder` (well under a minute
on CPU): a small CNN on 2,000 CIFAR-10 images for 4 epochs, its per-example forgetting scores, and every
batch replayed through the final weights (the probe's table).

    FORGETTING_DATA=../shared/data/cifar10.npz .venv/bin/python examples/recorder_loop.py [OUT]
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import forgetting as fg

torch.manual_seed(0)
data = fg.load_data()  # CIFAR-10; an example's index is its position in data.train_x and data.train_y
labels = torch.tensor(data.train_y)
subset = torch.arange(0, len(labels), 25)  # 2,000 images


def make_batch(indices, epoch):
    """These images as trained on in this epoch: a flip and a random crop of the reflect-padded image, drawn
    for every image from a generator seeded by the epoch, so that the replay gets the very same batch back."""
    g = torch.Generator().manual_seed(epoch)
    shift = torch.randint(0, 5, (len(labels), 2), generator=g)[indices]
    flip = torch.rand(len(labels), generator=g)[indices] < 0.5
    x = torch.from_numpy(data.train_x[indices]).permute(0, 3, 1, 2).float().div(255)
    x = F.pad(torch.where(flip[:, None, None, None], x.flip(3), x), [2] * 4, mode="reflect")
    return torch.stack([im[:, dy : dy + 32, dx : dx + 32] for im, (dy, dx) in zip(x, shift.tolist())]), labels[indices]


def block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]


model = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 16, 10))
epochs = 4
loader = DataLoader(TensorDataset(subset), batch_size=100, shuffle=True, generator=torch.Generator().manual_seed(0))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=epochs * len(loader))
recorder = fg.Recorder(seed=0)

for epoch in range(epochs):
    model.train()
    for (indices,) in loader:
        x, y = make_batch(indices, epoch)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        recorder.step(indices, out, y, epoch=epoch, lr=sched.get_last_lr()[0], inputs=x)  # the one added line
        sched.step()

scores = recorder.scores()  # one row per example: what `forgetting scores` writes for a study's runs
print(
    f"{len(scores):,} examples: {scores['unforgettable'].mean():.1%} unforgettable, "
    f"{scores['never_learned'].mean():.1%} never learned, "
    f"{scores['forgetting_events'].mean():.2f} forgetting events each"
)
columns = ["index", "label", "forgetting_events", "first_learned_epoch", "never_learned", "unforgettable"]
print(scores.sort_values("forgetting_events", ascending=False)[columns].head(5).to_string(index=False))
replay = recorder.replay(model, make_batch)  # the probe's table: each step's batch through the final weights
print(replay.groupby("epoch_age")[["loss_now", "acc_now", "loss_when_seen"]].mean().round(3).to_string())
if len(sys.argv) > 1:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    replay.to_csv(out / "replay.csv", index=False)
    print(f"wrote {out / 'scores.csv'} and {out / 'replay.csv'}")
