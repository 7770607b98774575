"""Training: Keras's losses, optimizers and `fit` loop over the trainable layers."""
