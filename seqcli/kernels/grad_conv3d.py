"""Conv3D gradients: chunked 3-D im2col + BLAS for the kernel gradient, col2im of
dy_pre @ kernel^T for the input gradient, the products on the kernels' threads (grad_gemm.py).

dy_pre is the gradient w.r.t. the pre-activation output; db = sum of dy_pre over (N, OD, OH,
OW); dx is None when `input_grad` is false (first layer). The transposed convolutions train
with this and `conv3d_forward`: their input gradient is a convolution of dy, their kernel
gradient this kernel gradient with x as the upstream gradient."""

from __future__ import annotations

import numpy as np

from seqcli.kernels.activations import _as_f32
from seqcli.kernels.conv3d import _col2im3d, _geometry3d, _im2col3d, _pads3
from seqcli.kernels.geometry import UsefulWindow
from seqcli.kernels.grad_dense import _bias_grad
from seqcli.kernels.grad_gemm import _product

# Upper bound on the im2col buffer of one chunk of output rows (bytes).
_CHUNK_BYTES = 4 << 20


def conv3d_backward(
    x, kernel, strides, dilation, padding, groups: int, dy_pre, *, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx, dk, db): dk[i,j,l,c,f] = sum x[n, o*s - p + (i,j,l)*d, c] dy[n,o,f], o = (od,oh,ow)."""
    x = _as_f32(x, "x", 5)
    kernel = _as_f32(kernel, "kernel", 5)
    nb, _, _, _, c_n = x.shape
    k_d, k_h, k_w, cg, f = kernel.shape
    groups = int(groups)
    if groups < 1 or c_n % groups or f % groups or cg != c_n // groups:
        raise ValueError(
            f"kernel {kernel.shape} does not fit {c_n} input channels in {groups} groups"
        )
    geometry = _geometry3d(x.shape, kernel.shape, strides, dilation, padding)
    out_d, out_h, out_w = geometry[12:]
    dy = _as_f32(dy_pre, "dy", 5)
    if dy.shape != (nb, out_d, out_h, out_w, f):
        raise ValueError(f"dy must have shape {(nb, out_d, out_h, out_w, f)}, got {dy.shape}")
    window = UsefulWindow(x.shape[1:4], kernel.shape[:3], geometry[3:6], geometry[6:9],
                          _pads3(padding))
    if window.trimmed:  # without the taps that read only padding: theirs are zero
        dx, dkernel, dbias = conv3d_backward(window.input(x), window.kernel(kernel),
                                             geometry[3:6], geometry[6:9], window.padding,
                                             groups, dy, input_grad=input_grad)
        return window.input_grad(dx, x.shape), window.kernel_grad(dkernel, kernel.shape), dbias
    total = nb * out_d * out_h * out_w
    dy2d = dy.reshape(total, f)  # (N*OD*OH*OW, F)
    dbias = _bias_grad(dy2d)
    fg = f // groups
    width = k_d * k_h * k_w * cg
    # (KD, KH, KW, Cg, F) -> (G, KD*KH*KW*Cg, F/G), rows in the im2col column order
    wstack = np.ascontiguousarray(kernel.reshape(width, groups, fg).transpose(1, 0, 2))
    dstack = np.zeros((groups, width, fg), dtype=np.float32)
    dx = np.zeros_like(x) if input_grad else None
    chunk = max(1, min(total, _CHUNK_BYTES // max(1, 4 * width * groups)))
    cols = np.empty((groups, chunk, width), dtype=np.float32)
    for r0 in range(0, total, chunk):
        rows = min(chunk, total - r0)
        _im2col3d(x, cols, r0, rows, geometry)
        for g in range(groups):
            dyg = np.ascontiguousarray(dy2d[r0 : r0 + rows, g * fg : (g + 1) * fg])  # (rows, F/G)
            _product(cols[g, :rows], dyg, trans_a=True, out=dstack[g])  # (width, F/G)
            if input_grad:  # (rows, width), over this group's columns
                cols[g, :rows] = _product(dyg, wstack[g], trans_b=True)
        if input_grad:
            _col2im3d(cols, dx, r0, rows, geometry)
    # (G, KD*KH*KW*Cg, F/G) -> (KD, KH, KW, Cg, F), filter g*F/G + j
    dkernel = np.ascontiguousarray(dstack.transpose(1, 0, 2)).reshape(k_d, k_h, k_w, cg, f)
    return dx, dkernel, dbias
