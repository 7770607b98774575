"""Running models: weights, initialisers, the forward pass, streaming prediction."""
