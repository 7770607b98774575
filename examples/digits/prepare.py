"""Write the digits data for the transfer-learning example as .npy files.

scikit-learn ships the 8x8 digits dataset (1,797 images, pixels 0-16); nothing is
downloaded. Digits 0-4 pre-train the model; digits 5-9 (relabelled 0-4) are the new task.
Each half is split 70/30 into training and held-out rows, with a fixed seed.

    python examples/digits/prepare.py OUTDIR
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

out = Path(sys.argv[1] if len(sys.argv) > 1 else "digits-data")
out.mkdir(parents=True, exist_ok=True)
digits = load_digits()
images = digits.images.astype(np.float32)[..., None]  # (1797, 8, 8, 1), 0..16
labels = digits.target
rng = np.random.default_rng(0)
for name, wanted in (("first", labels < 5), ("second", labels >= 5)):
    index = rng.permutation(np.flatnonzero(wanted))
    split = int(len(index) * 0.7)
    for part, rows in (("train", index[:split]), ("test", index[split:])):
        np.save(out / f"{name}_{part}_x.npy", images[rows])
        np.save(out / f"{name}_{part}_y.npy", (labels[rows] % 5).astype(np.int64))
print(f"wrote digits 0-4 and 5-9, 70/30 train/test, to {out}/", file=sys.stderr)
