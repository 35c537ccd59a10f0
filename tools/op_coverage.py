"""The README's operator coverage table: which PyTorch ops picograd has, grouped as PyTorch's documentation groups
them (the ``torch``, ``torch.nn.functional`` and ``torch.nn`` reference pages), and which are missing.

The groups below list PyTorch's names (documentation of torch 2.x; deprecated aliases, complex numbers, sparse and
quantized tensors, distributed and in-place ``_`` variants left out). Whether picograd has one is looked up in the
installed package (``picograd``, ``picograd.nn.functional``, ``picograd.nn``), so the table follows the code.

    python tools/op_coverage.py            # print the markdown
    python tools/op_coverage.py --write    # replace the table in README.md (between the coverage markers)
    python tools/op_coverage.py --check    # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import picograd.nn.functional as F

import picograd as pg

TORCH: dict[str, str] = {
    "Creation ops": "tensor as_tensor from_numpy zeros zeros_like ones ones_like arange linspace logspace eye empty "
    "empty_like full full_like",
    "Indexing, slicing, joining, mutating ops": "argwhere cat concat concatenate chunk dsplit column_stack dstack "
    "gather hsplit hstack index_add index_copy index_reduce index_select masked_select movedim moveaxis narrow "
    "nonzero permute reshape row_stack select scatter diagonal_scatter select_scatter slice_scatter scatter_add "
    "scatter_reduce split squeeze stack swapaxes swapdims t take take_along_dim tensor_split tile transpose unbind "
    "unravel_index unsqueeze vsplit vstack where",
    "Random sampling": "manual_seed seed bernoulli multinomial normal poisson rand rand_like randint randint_like "
    "randn randn_like randperm",
    "Serialization": "save load",
    "Gradient modes": "no_grad enable_grad set_grad_enabled is_grad_enabled inference_mode",
    "Pointwise ops": "abs absolute acos arccos acosh arccosh add addcdiv addcmul asin arcsin asinh arcsinh atan arctan "
    "atanh arctanh atan2 arctan2 bitwise_not bitwise_and bitwise_or bitwise_xor bitwise_left_shift "
    "bitwise_right_shift ceil clamp clip copysign cos cosh deg2rad div divide digamma erf erfc erfinv exp exp2 expm1 "
    "fix float_power floor floor_divide fmod frac frexp ldexp lerp lgamma log log10 log1p log2 logaddexp logaddexp2 "
    "logical_and logical_not logical_or logical_xor logit hypot i0 mul multiply nan_to_num neg negative nextafter "
    "polygamma positive pow rad2deg reciprocal remainder round rsqrt sigmoid sign sgn signbit sin sinc sinh softmax "
    "sqrt square sub subtract tan tanh true_divide trunc xlogy",
    "Reduction ops": "argmax argmin amax amin aminmax all any max min dist logsumexp mean nanmean median nanmedian "
    "mode norm nansum prod quantile nanquantile std std_mean sum unique unique_consecutive var var_mean "
    "count_nonzero",
    "Comparison ops": "allclose argsort eq equal ge greater_equal gt greater isclose isfinite isin isinf isposinf "
    "isneginf isnan kthvalue le less_equal lt less maximum minimum fmax fmin ne not_equal sort topk msort",
    "Other operations": "atleast_1d atleast_2d atleast_3d bincount block_diag broadcast_tensors broadcast_to "
    "broadcast_shapes bucketize cartesian_prod cdist clone combinations corrcoef cov cross cummax cummin cumprod "
    "cumsum diag diag_embed diagflat diagonal diff einsum flatten flip fliplr flipud kron rot90 gcd histc meshgrid "
    "lcm logcumsumexp ravel renorm repeat_interleave roll searchsorted tensordot trace tril tril_indices triu "
    "triu_indices unflatten vander",
    "BLAS and LAPACK": "addbmm addmm addmv addr baddbmm bmm chain_matmul dot inner matmul matrix_power mm mv outer "
    "trapezoid vdot",
}
FUNCTIONAL: dict[str, str] = {
    "Convolution": "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d unfold fold",
    "Pooling": "avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d lp_pool1d lp_pool2d "
    "adaptive_max_pool1d adaptive_max_pool2d adaptive_avg_pool1d adaptive_avg_pool2d",
    "Attention": "scaled_dot_product_attention",
    "Non-linear activations": "threshold relu hardtanh hardswish relu6 elu selu celu leaky_relu prelu rrelu glu gelu "
    "logsigmoid hardshrink tanhshrink softsign softplus softmin softmax softshrink gumbel_softmax log_softmax tanh "
    "sigmoid hardsigmoid silu mish batch_norm group_norm instance_norm layer_norm local_response_norm rms_norm "
    "normalize",
    "Linear": "linear bilinear",
    "Dropout": "dropout alpha_dropout feature_alpha_dropout dropout1d dropout2d dropout3d",
    "Sparse": "embedding embedding_bag one_hot",
    "Distance": "pairwise_distance cosine_similarity pdist",
    "Loss": "binary_cross_entropy binary_cross_entropy_with_logits poisson_nll_loss cosine_embedding_loss "
    "cross_entropy ctc_loss gaussian_nll_loss hinge_embedding_loss kl_div l1_loss mse_loss margin_ranking_loss "
    "multilabel_margin_loss multilabel_soft_margin_loss multi_margin_loss nll_loss huber_loss smooth_l1_loss "
    "soft_margin_loss triplet_margin_loss",
    "Vision": "pixel_shuffle pixel_unshuffle pad interpolate grid_sample affine_grid",
}
MODULES: dict[str, str] = {
    "Containers": "Module Sequential ModuleList ModuleDict ParameterList ParameterDict",
    "Convolution layers": "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d Unfold Fold",
    "Pooling layers": "MaxPool1d MaxPool2d AvgPool1d AvgPool2d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveMaxPool2d",
    "Padding layers": "ZeroPad2d ConstantPad1d ConstantPad2d ReflectionPad2d ReplicationPad2d",
    "Non-linear activations": "ELU Hardshrink Hardsigmoid Hardtanh Hardswish LeakyReLU LogSigmoid MultiheadAttention "
    "PReLU ReLU ReLU6 RReLU SELU CELU GELU Sigmoid SiLU Mish Softplus Softshrink Softsign Tanh Tanhshrink Threshold "
    "GLU Softmin Softmax LogSoftmax",
    "Normalization layers": "BatchNorm1d BatchNorm2d GroupNorm InstanceNorm2d LayerNorm LocalResponseNorm RMSNorm",
    "Recurrent layers": "RNN LSTM GRU RNNCell LSTMCell GRUCell",
    "Transformer layers": "Transformer TransformerEncoder TransformerDecoder TransformerEncoderLayer "
    "TransformerDecoderLayer",
    "Linear layers": "Identity Linear Bilinear",
    "Dropout layers": "Dropout Dropout1d Dropout2d AlphaDropout",
    "Sparse layers": "Embedding EmbeddingBag",
    "Loss functions": "L1Loss MSELoss CrossEntropyLoss NLLLoss BCELoss BCEWithLogitsLoss KLDivLoss HuberLoss "
    "SmoothL1Loss",
    "Utilities": "Flatten Unflatten",
}
PAGES = [
    ("`torch`", pg, TORCH),
    ("`torch.nn.functional`", F, FUNCTIONAL),
    ("`torch.nn`", pg.nn, MODULES),
]
START, END = "<!-- op-coverage:start -->", "<!-- op-coverage:end -->"


def table() -> str:
    """The coverage table in markdown: one row per documentation group."""
    lines = [
        "| page | group | picograd has | missing |",
        "|---|---|---|---|",
    ]
    total_have = total = 0
    for page, module, groups in PAGES:
        for group, names in groups.items():
            listed = names.split()
            have = [n for n in listed if hasattr(module, n)]
            missing = [n for n in listed if not hasattr(module, n)]
            total_have += len(have)
            total += len(listed)
            has = f"{len(have)}/{len(listed)}: {' '.join(have) or '-'}"
            lines.append(f"| {page} | {group} | {has} | {' '.join(missing) or '-'} |")
    lines.append("")
    lines.append(
        f"{total_have} of the {total} listed PyTorch ops and modules are there (`python tools/op_coverage.py`)."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    args = parser.parse_args()
    body = table()
    if not (args.write or args.check):
        print(body)
        return 0
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme}: no {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{body}\n{END}{tail}"
    if args.check:
        if new != text:
            print(
                "README.md's op coverage table is out of date: run python tools/op_coverage.py --write", file=sys.stderr
            )
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
