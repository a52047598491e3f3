"""2-D convolution (cross-correlation) three ways, its gradient and its transpose.

For an input ``x`` of shape ``(N, C_in, H, W)`` and a kernel ``K`` of shape ``(C_out, C_in, kH, kW)``
a convolutional layer computes (lecture 3, HSE; what every framework calls "convolution" is a
cross-correlation: the kernel is not flipped)

.. math::

    y_{n,o,i,j} = b_o + \\sum_{c} \\sum_{a<kH} \\sum_{b<kW}
        K_{o,c,a,b}\\, x_{n,c,\\; s i + d a - p,\\; s j + d b - p}

with stride ``s``, zero padding ``p`` and dilation ``d``. Each spatial output size is

.. math::  L_{out} = \\left\\lfloor \\frac{L_{in} + 2p - d (k - 1) - 1}{s} \\right\\rfloor + 1 .

* :func:`conv2d_loops` — the formula as loops over output pixels: slow, for reading.
* :func:`im2col` / :func:`col2im` — unfold every receptive field into a column and back.
* :func:`conv2d` — im2col + one matrix product, how cuDNN/MKL-DNN-style libraries do it; one autograd
  node (:class:`Conv2dFunction`) whose backward is :func:`conv2d_backward`.
* :func:`conv2d_backward` — the gradients: again matrix products (the transposed matrix).
* :func:`conv_transpose2d` — the "up-convolution": the input-gradient of a convolution used forward.
* :func:`conv_matrix` — a single-channel convolution written as a (sparse) matrix.

Names and argument order follow ``torch.nn.functional``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IntPair = int | tuple[int, int]


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis.

    ``L_out = floor((L_in + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``

    Raises:
        ValueError: the (dilated) kernel does not fit in the padded input, or an argument is < 1.
    """
    if kernel_size < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"need kernel_size, stride, dilation >= 1 and padding >= 0, got "
                         f"kernel_size={kernel_size}, stride={stride}, dilation={dilation}, padding={padding}")
    span = dilation * (kernel_size - 1) + 1  # the kernel's footprint on the input
    if size + 2 * padding < span:
        raise ValueError(f"kernel footprint {span} (kernel_size={kernel_size}, dilation={dilation}) "
                         f"is larger than the padded input {size} + 2*{padding}")
    return (size + 2 * padding - span) // stride + 1


def _check_conv_args(input: torch.Tensor, weight: torch.Tensor, groups: int) -> None:
    if input.dim() != 4:
        raise ValueError(f"input must be (N, C_in, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}")
    C_in, C_out = input.shape[1], weight.shape[0]
    if C_in % groups or C_out % groups:
        raise ValueError(f"groups={groups} must divide C_in={C_in} and C_out={C_out}")
    if weight.shape[1] * groups != C_in:
        raise ValueError(f"weight has {weight.shape[1]} input channels per group, but the input has "
                         f"C_in={C_in} channels in groups={groups}")


def conv2d_loops(input, weight, bias=None, stride: IntPair = 1, padding: IntPair = 0,
                 dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """Convolution straight from the formula: one loop over the output pixels ``(i, j)``.

    Every output pixel is the dot product of the kernel with the window of the input it sees.

    Args:
        input: ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in/groups, kH, kW)``.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(N, C_out, H_out, W_out)``, equal to ``F.conv2d`` with the same arguments.
    """
    _check_conv_args(input, weight, groups)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    N, C_in, H, W = input.shape
    C_out, C_per_group, kH, kW = weight.shape
    H_out, W_out = conv_output_size(H, kH, sh, ph, dh), conv_output_size(W, kW, sw, pw, dw)
    x = F.pad(input, (pw, pw, ph, ph))
    w = weight.reshape(groups, C_out // groups, C_per_group, kH, kW)
    out = input.new_zeros(N, C_out, H_out, W_out)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * sh: i * sh + dh * (kH - 1) + 1: dh, j * sw: j * sw + dw * (kW - 1) + 1: dw]
            window = window.reshape(N, groups, C_per_group, kH, kW)
            out[:, :, i, j] = torch.einsum("ngcab,gocab->ngo", window, w).reshape(N, C_out)
    if bias is not None:
        out += bias.view(1, C_out, 1, 1)
    return out


def im2col(input: torch.Tensor, kernel_size: IntPair, dilation: IntPair = 1, padding: IntPair = 0,
           stride: IntPair = 1) -> torch.Tensor:
    """Unfold every receptive field of ``input`` into a column (the same as ``F.unfold``).

    Column ``(i, j)``, row ``(c, a, b)`` holds the padded pixel ``x[c, s*i + d*a, s*j + d*b]``.

    Args:
        input: ``(N, C, H, W)``.

    Returns:
        ``(N, C*kH*kW, L)`` with ``L = H_out*W_out``; rows are ordered ``(c, a, b)``, columns
        ``(i, j)``, so that ``weight.reshape(C_out, -1) @ cols`` is the convolution.
    """
    (kH, kW), (dh, dw) = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
    (ph, pw), (sh, sw) = _pair(padding, "padding"), _pair(stride, "stride")
    N, C, H, W = input.shape
    H_out, W_out = conv_output_size(H, kH, sh, ph, dh), conv_output_size(W, kW, sw, pw, dw)
    x = F.pad(input, (pw, pw, ph, ph))
    sN, sC, sH, sW = x.stride()
    # Moving one step along a, b, i or j moves a fixed distance in memory (d or s rows/columns),
    # so all windows are one strided *view* of the padded image: nothing is copied yet.
    windows = x.as_strided((N, C, kH, kW, H_out, W_out),
                           (sN, sC, dh * sH, dw * sW, sh * sH, sw * sW), x.storage_offset())
    # The one copy: overlapping windows share pixels, the matrix repeats them.
    return windows.reshape(N, C * kH * kW, H_out * W_out)


def col2im(cols: torch.Tensor, output_size: IntPair, kernel_size: IntPair, dilation: IntPair = 1,
           padding: IntPair = 0, stride: IntPair = 1) -> torch.Tensor:
    """Fold columns back into an image, *summing* overlaps (the adjoint of :func:`im2col`, ``F.fold``).

    ``x[c, p] = sum of cols[c, a, b, i, j] over all (a, b, i, j) that im2col read from pixel p``.

    Args:
        cols: ``(N, C*kH*kW, L)`` as produced by :func:`im2col`.
        output_size: ``(H, W)`` of the image to rebuild.

    Returns:
        ``(N, C, H, W)``.
    """
    (H, W), (kH, kW) = _pair(output_size, "output_size"), _pair(kernel_size, "kernel_size")
    (dh, dw), (ph, pw), (sh, sw) = _pair(dilation, "dilation"), _pair(padding, "padding"), _pair(stride, "stride")
    H_out, W_out = conv_output_size(H, kH, sh, ph, dh), conv_output_size(W, kW, sw, pw, dw)
    N, CKK, L = cols.shape
    if CKK % (kH * kW) or L != H_out * W_out:
        raise ValueError(f"cols of shape {tuple(cols.shape)} do not match kernel {kH}x{kW} and "
                         f"{H_out}x{W_out} output positions")
    C, Hp, Wp = CKK // (kH * kW), H + 2 * ph, W + 2 * pw
    # Where each entry came from: im2col of the padded image's pixel numbers, (kH*kW*L,).
    pixel = torch.arange(Hp * Wp, device=cols.device).reshape(1, 1, Hp, Wp)
    source = im2col(pixel, (kH, kW), (dh, dw), 0, (sh, sw)).reshape(-1)
    # The transpose of a copy is a sum: every entry is added back to its pixel, in one pass.
    x = cols.new_zeros(N, C, Hp * Wp).index_add_(2, source, cols.reshape(N, C, kH * kW * L))
    return x.reshape(N, C, Hp, Wp)[:, :, ph: ph + H, pw: pw + W]


def conv2d(input, weight, bias=None, stride: IntPair = 1, padding: IntPair = 0,
           dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """Convolution as im2col + a batched matrix product: ``Y = W_mat @ im2col(X) + b``.

    Args:
        input: ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in/groups, kH, kW)``.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(N, C_out, H_out, W_out)``, equal to ``F.conv2d``. Differentiable: autograd sees one
        node, :class:`Conv2dFunction`, whose backward is :func:`conv2d_backward`.
    """
    _check_conv_args(input, weight, groups)
    return Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups)


class Conv2dFunction(torch.autograd.Function):
    """A convolutional layer as one autograd node: forward im2col + matmul, backward :func:`conv2d_backward`.

    Left to autograd, the strided copies of im2col would each record a node and allocate their own
    gradient buffers; the chapter's formulas need only the weight and the columns.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        N, C_in, H, W = input.shape
        C_out, _, kH, kW = weight.shape
        (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
        H_out, W_out = conv_output_size(H, kH, sh, ph, dh), conv_output_size(W, kW, sw, pw, dw)
        cols = im2col(input, (kH, kW), dilation, padding, stride)  # (N, C_in*kH*kW, L)
        w = weight.reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G*kH*kW)
        out = torch.matmul(w, cols.reshape(N, groups, -1, H_out * W_out))  # (N, G, C_out/G, L)
        out = out.reshape(N, C_out, H_out, W_out)
        if bias is not None:
            out += bias.view(1, C_out, 1, 1)  # in place: autograd does not record inside forward
        # Keeping the columns costs memory (kH*kW copies of the input) but spares im2col in backward.
        ctx.save_for_backward(input, weight, cols)
        ctx.geometry, ctx.has_bias = (stride, padding, dilation, groups), bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, cols = ctx.saved_tensors
        if torch.is_grad_enabled():  # backward is being differentiated: cols must be a function of input
            cols = None
        grad_input, grad_weight, grad_bias = conv2d_backward(grad_output, input, weight, *ctx.geometry, cols=cols)
        # One gradient per argument of forward; stride, padding, dilation and groups get None.
        return grad_input, grad_weight, grad_bias if ctx.has_bias else None, None, None, None, None


def _input_grad(grad_output, weight, input_size, stride, padding, dilation, groups) -> torch.Tensor:
    """``dL/dX = col2im(W_mat^T @ dL/dY)``: the transposed matrix applied to the output gradient."""
    N, C_out, H_out, W_out = grad_output.shape
    _, C_per_group, kH, kW = weight.shape
    g = grad_output.reshape(N, groups, C_out // groups, H_out * W_out)  # (N, G, C_out/G, L)
    w = weight.reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G*kH*kW)
    grad_cols = torch.matmul(w.transpose(1, 2), g)  # (N, G, C_in/G*kH*kW, L)
    grad_cols = grad_cols.reshape(N, groups * C_per_group * kH * kW, H_out * W_out)
    return col2im(grad_cols, input_size, (kH, kW), dilation, padding, stride)


def conv2d_backward(grad_output, input, weight, stride: IntPair = 1, padding: IntPair = 0,
                    dilation: IntPair = 1, groups: int = 1, *, cols: torch.Tensor | None = None):
    """Gradients of :func:`conv2d` — a convolution is linear, so they are matrix products too.

    .. math::
        \\frac{\\partial L}{\\partial X} = \\operatorname{col2im}\\left(W^T \\frac{\\partial L}{\\partial Y}\\right),\\quad
        \\frac{\\partial L}{\\partial W} = \\sum_n \\frac{\\partial L}{\\partial Y_n} \\operatorname{im2col}(X_n)^T,\\quad
        \\frac{\\partial L}{\\partial b} = \\sum_{n,i,j} \\frac{\\partial L}{\\partial Y_{n,:,i,j}}

    Args:
        grad_output: ``(N, C_out, H_out, W_out)``, the gradient flowing into the layer's output.
        input: ``(N, C_in, H, W)``, the layer's input in the forward pass.
        weight: ``(C_out, C_in/groups, kH, kW)``.
        cols: ``im2col(input)``, ``(N, C_in*kH*kW, L)``, if the forward pass kept it; else recomputed.

    Returns:
        ``(grad_input, grad_weight, grad_bias)`` with the shapes of input, weight and ``(C_out,)``.
    """
    _check_conv_args(input, weight, groups)
    N, C_in, H, W = input.shape
    C_out, _, kH, kW = weight.shape
    L = grad_output.shape[2] * grad_output.shape[3]
    # The gradient of a .sum() arrives as one number broadcast (stride 0): a matrix product needs it in memory.
    grad_output = grad_output.contiguous()
    grad_input = _input_grad(grad_output, weight, (H, W), stride, padding, dilation, groups)
    if cols is None:
        cols = im2col(input, (kH, kW), dilation, padding, stride)  # (N, C_in*kH*kW, L)
    cols = cols.reshape(N, groups, -1, L)  # (N, G, K, L)
    g = grad_output.reshape(N, groups, C_out // groups, L)  # (N, G, C_out/G, L)
    grad_weight = torch.matmul(g, cols.transpose(2, 3)).sum(0)  # (G, C_out/G, K)
    grad_bias = grad_output.sum(dim=(0, 2, 3))
    return grad_input, grad_weight.reshape(weight.shape), grad_bias


def conv_transpose2d(input, weight, bias=None, stride: IntPair = 1, padding: IntPair = 0,
                     output_padding: IntPair = 0, groups: int = 1, dilation: IntPair = 1) -> torch.Tensor:
    """Transposed convolution ("up-convolution", "deconvolution"): the input-gradient of a
    convolution, used as a forward layer to *increase* resolution.

    ``H_out = (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1``

    Args:
        input: ``(N, C_in, H, W)``.
        weight: ``(C_in, C_out/groups, kH, kW)`` (the layout of ``nn.ConvTranspose2d``).
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(N, C_out, H_out, W_out)``, equal to ``F.conv_transpose2d``.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    oph, opw = _pair(output_padding, "output_padding")
    N, C_in, H, W = input.shape
    _, C_per_group, kH, kW = weight.shape
    H_out = (H - 1) * sh - 2 * ph + dh * (kH - 1) + oph + 1
    W_out = (W - 1) * sw - 2 * pw + dw * (kW - 1) + opw + 1
    # Seen from the forward convolution (C_out*groups ... ) that maps (H_out, W_out) -> (H, W),
    # this layer's weight is that convolution's weight and its input is that convolution's grad_output.
    out = _input_grad(input, weight, (H_out, W_out), (sh, sw), (ph, pw), (dh, dw), groups)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def conv_matrix(kernel: torch.Tensor, input_size: IntPair, stride: IntPair = 1, padding: IntPair = 0,
                dilation: IntPair = 1) -> torch.Tensor:
    """A single-channel convolution as a matrix ``C`` with ``vec(y) = C @ vec(x)``.

    Row ``i*W_out + j`` holds the kernel's entries at the columns of the pixels that output
    ``(i, j)`` sees, and zeros elsewhere: the matrix is sparse and its rows are shifted copies of
    one another (weight sharing). ``C.T`` maps output gradients back to input gradients, which is
    also what a transposed convolution does.

    Args:
        kernel: ``(kH, kW)``.
        input_size: ``(H, W)``.

    Returns:
        Dense ``(H_out*W_out, H*W)``; call ``.to_sparse()`` for the sparse form.
    """
    H, W = _pair(input_size, "input_size")
    kH, kW = kernel.shape
    # Convolving the H*W unit images (the identity's columns) gives the matrix's columns.
    basis = torch.eye(H * W, dtype=kernel.dtype, device=kernel.device).reshape(H * W, 1, H, W)
    columns = conv2d(basis, kernel.reshape(1, 1, kH, kW), stride=stride, padding=padding, dilation=dilation)
    return columns.reshape(H * W, -1).T
