#!/usr/bin/env bash
# The Keras guide's transfer learning on scikit-learn's digits, every step a seqcli command:
# pre-train on digits 0-4, freeze the base, train a new head on digits 5-9, report accuracy.
#   examples/digits/run.sh [WORKDIR]      (seqcli on PATH, scikit-learn installed)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
python "$here/prepare.py" "$work"
cp "$here"/base.yaml "$here"/pretrain.yaml "$here"/transfer.yaml "$work"/
cd "$work"

# 1. pre-train base + head on digits 0-4
seqcli fit pretrain.yaml first_train_x.npy first_train_y.npy \
  --loss sparse_categorical_crossentropy --optimizer adam --epochs 15 --batch-size 32 \
  --seed 0 --validation-data first_test_x.npy first_test_y.npy -o pretrained.safetensors

# 2. freeze the base of the new model, and start it from the pre-trained base
seqcli freeze transfer.yaml --layer base --in-place
seqcli summary transfer.yaml --show-trainable
seqcli init transfer.yaml --weights-from pretrained.safetensors -o start.safetensors

# 3. train only the new head on digits 5-9; the epoch lines report held-out accuracy
seqcli fit transfer.yaml second_train_x.npy second_train_y.npy --weights start.safetensors \
  --loss sparse_categorical_crossentropy --optimizer adam --epochs 20 \
  --batch-size 32 --seed 0 --validation-data second_test_x.npy second_test_y.npy \
  --history history.json -o transferred.safetensors

# 4. predict the held-out digits 5-9 and count the hits
seqcli predict transfer.yaml second_test_x.npy --weights transferred.safetensors --argmax \
  > predicted.txt
python -c "
import numpy as np
truth = np.load('second_test_y.npy'); guess = np.loadtxt('predicted.txt', dtype=int)
print(f'held-out accuracy on digits 5-9: {(truth == guess).mean():.4f} ({len(truth)} images)')"

# 5. Keras's model.evaluate on the same held-out images: the loss and the same accuracy
seqcli evaluate transfer.yaml second_test_x.npy second_test_y.npy \
  --weights transferred.safetensors --loss sparse_categorical_crossentropy
