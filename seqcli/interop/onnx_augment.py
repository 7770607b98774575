"""ONNX lowerings of the random image-augmentation layers (RandomFlip, RandomRotation,
RandomZoom, RandomTranslation, RandomContrast, RandomBrightness): the identity at inference,
as Keras."""

from __future__ import annotations

from seqcli import layers as L  # noqa: N812
from seqcli.build import LayerInfo
from seqcli.interop.onnx_graph import Graph, Tensor, exports


@exports(L.RandomFlip, L.RandomRotation, L.RandomZoom, L.RandomTranslation, L.RandomContrast,
         L.RandomBrightness)
def _identity(graph: Graph, info: LayerInfo, weights: dict, x: Tensor, prefix: str):
    """The augmentation layers at inference: nothing to compute."""
    return x
