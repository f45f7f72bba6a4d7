"""The model: frozen pretrained backbones, the embedding cache, the linear head and prediction."""
