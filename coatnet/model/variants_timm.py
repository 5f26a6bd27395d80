"""timm's CoAtNets as configs of our own blocks (timm's maxxvit.py), so their weights load exactly.

``_rw`` variants are timm's own designs (Ross Wightman); ``coatnet_N_224`` are timm's paper-like models
(no public weights). Each knob is a field of :class:`CoAtNetConfig` with one meaning.
"""

from __future__ import annotations

from typing import Any

from coatnet.model.config import CoAtNetConfig, stage


def _timm(
    name: str, stem: tuple[int, int], dims: tuple[int, ...], depths: tuple[int, ...], **knobs: Any
) -> CoAtNetConfig:
    kinds = ("C", "C", "T", "T")
    common: dict[str, Any] = dict(pool="avg", ln_eps=1e-6, mbconv_stride="dw")
    return CoAtNetConfig(
        name=name,
        stem_width=stem[0],
        stem_dim=stem[1],
        stages=tuple(stage(k, d, c) for k, d, c in zip(kinds, depths, dims, strict=True)),
        **{**common, **knobs},
    )


def _rw_coat(name: str, stem, dims, depths, **knobs: Any) -> CoAtNetConfig:
    """timm's first CoAtNets: SiLU MBConv with an activation after the pre-norm, hidden = 4 x C_in, no
    output biases, SE (ReLU) at 0.25 of the hidden width, q/k/v at the input width, a final norm."""
    base: dict[str, Any] = dict(
        conv_act="silu",
        mbconv_pre_norm_act=True,
        mbconv_expand_from="in",
        mbconv_bias=False,
        se_from="hidden",
        se_act="relu",
        mbconv_stride="pool",
        attn_width="in",
        final_norm=True,
    )
    return _timm(name, stem, dims, depths, **{**base, **knobs})


def _rw_max(name: str, stem, dims, depths, **knobs: Any) -> CoAtNetConfig:
    """timm's nano CoAtNets (MaxViT-style base): SiLU MBConv, no pre-norm activation, output biases,
    SE (SiLU) at 0.25 of the hidden width after the second norm, q/k/v at the input width."""
    base: dict[str, Any] = dict(
        conv_act="silu",
        mbconv_expand_from="in",
        mbconv_bias=True,
        se_from="hidden",
        se_act="silu",
        attn_width="in",
        final_norm=True,
    )
    return _timm(name, stem, dims, depths, **{**base, **knobs})


def _paper_like(name: str, stem_dim: int, dims, depths) -> CoAtNetConfig:
    """timm's paper-like CoAtNets: GELU, stride in the depthwise conv, SE (SiLU) at 0.25 of the output
    width, q/k/v at the output width, and a LayerNorm + tanh pre-logits head."""
    return _timm(name, (stem_dim, stem_dim), dims, depths, se_from="out", se_act="silu", head_hidden=dims[-1])


_W0, _W2, _W3, _WN = (96, 192, 384, 768), (128, 256, 512, 1024), (192, 384, 768, 1536), (64, 128, 256, 512)

_RMLP_2 = _rw_coat(
    "coatnet_rmlp_2_rw_224",
    (64, 128),
    _W2,
    (2, 6, 14, 2),
    mbconv_stride="dw",
    se_act="silu",
    layer_scale=1e-6,
    rel_pos="mlp",
)


def _maxvit(name: str, stem, dims, depths, *, tf: bool, **knobs: Any) -> CoAtNetConfig:
    """timm's MaxViTs (``maxxvit.py``): every stage MaxViT blocks (``M``), windows and grids of the input
    size / 32, the stride in the depthwise conv, 2x2 average-pooled shortcuts. ``tf``: the weights the
    authors released (GELU-tanh, BatchNorm eps 1e-3, TensorFlow "same" padding, SE at a quarter of the
    output width, hidden = 4 x C_out, biased stem and outputs, LayerNorm eps 1e-5, the tanh pre-logits
    head); else timm's own ``_rw`` MaxViTs (SiLU, hidden = 4 x C_in, SE at 1/16 of it, no output biases,
    LayerNorm eps 1e-6 and a final norm)."""
    size = int(name.rsplit("_", 1)[1])
    if tf:
        base: dict[str, Any] = dict(
            conv_act="gelu_tanh", mlp_act="gelu_tanh", bn_eps=1e-3, tf_padding=True, se_from="out",
            se_ratio=0.25, stem_bias=True, ln_eps=1e-5, head_hidden=dims[-1],
        )  # fmt: skip
    else:
        base = dict(conv_act="silu", mbconv_expand_from="in", se_from="hidden", se_ratio=1 / 16,
                    mbconv_bias=False, ln_eps=1e-6, final_norm=True)  # fmt: skip
    common = dict(pool="avg", mbconv_stride="dw", se_act="silu", img_size=(size, size))
    return CoAtNetConfig(
        name=name,
        stem_width=stem[0],
        stem_dim=stem[1],
        stages=tuple(stage("M", d, c) for d, c in zip(depths, dims, strict=True)),
        **{**common, **base, **knobs},
    )


_MAXVIT_TF = {  # the paper's MaxViT-T/S/B/L/XL (Table 1), as released
    "tiny": (64, (64, 128, 256, 512), (2, 2, 5, 2)),
    "small": (64, (96, 192, 384, 768), (2, 2, 5, 2)),
    "base": (64, (96, 192, 384, 768), (2, 6, 14, 2)),
    "large": (128, (128, 256, 512, 1024), (2, 6, 14, 2)),
    "xlarge": (192, (192, 384, 768, 1536), (2, 6, 14, 2)),
}
_MAXVIT_RW = {  # timm's own: (stem, dims, depths, knobs)
    "pico_rw": ((24, 32), (32, 64, 128, 256), (2, 2, 5, 2), {}),
    "nano_rw": ((32, 64), (64, 128, 256, 512), (1, 2, 3, 1), {}),
    "tiny_rw": ((32, 64), (64, 128, 256, 512), (2, 2, 5, 2), {}),
    # timm's experimental parallel block (PM, no released weights): coatnet/model/parallel.py
    "tiny_pm": ((32, 64), (64, 128, 256, 512), (2, 2, 5, 2), {"parallel_partitions": True}),
    "rmlp_pico_rw": ((24, 32), (32, 64, 128, 256), (2, 2, 5, 2), {"rel_pos": "mlp"}),
    "rmlp_nano_rw": ((32, 64), (64, 128, 256, 512), (1, 2, 3, 1), {"rel_pos": "mlp"}),
    "rmlp_tiny_rw": ((32, 64), (64, 128, 256, 512), (2, 2, 5, 2), {"rel_pos": "mlp"}),
    "rmlp_small_rw": ((32, 64), (96, 192, 384, 768), (2, 2, 5, 2), {"rel_pos": "mlp", "layer_scale": 1e-6}),
    "rmlp_base_rw": (
        (32, 64),
        (96, 192, 384, 768),
        (2, 6, 14, 2),
        {"rel_pos": "mlp", "head_hidden": 768, "final_norm": False},
    ),
}
_MAXVIT_RW_SIZES = {"pico_rw": (256,), "nano_rw": (256,), "tiny_rw": (224, 256), "tiny_pm": (256,),
                    "rmlp_pico_rw": (256,),
                    "rmlp_nano_rw": (256,), "rmlp_tiny_rw": (256,), "rmlp_small_rw": (224, 256),
                    "rmlp_base_rw": (224, 384)}  # fmt: skip
# timm's ConvNeXt-based models (``_next_cfg``): ConvNeXt blocks for MBConv (a 7x7 depthwise conv, LayerNorm,
# a 1x1-conv MLP, LayerScale), a LayerNorm stem, GELU, LayerNorm eps 1e-6 and a final norm
_NEXT: dict[str, Any] = dict(conv_block="convnext", kernel_size=7, stem_norm="layer", conv_act="gelu",
                             ln_eps=1e-6, final_norm=True, mbconv_expand_from="out")  # fmt: skip
_MAXXVIT = {  # (stem, dims, depths, knobs): MaxxViT (block + grid attention), MaxxViT-V2 (grid alone)
    "maxxvit_rmlp_nano_rw": ((32, 64), (64, 128, 256, 512), (1, 2, 3, 1), {}),
    "maxxvit_rmlp_tiny_rw": ((32, 64), (64, 128, 256, 512), (2, 2, 5, 2), {}),
    "maxxvit_rmlp_small_rw": ((48, 96), (96, 192, 384, 768), (2, 2, 5, 2), {}),
    "maxxvitv2_nano_rw": (
        (48, 96), (96, 192, 384, 768), (1, 2, 3, 1), {"block_attention": False, "rel_pos": "table"},
    ),
    "maxxvitv2_rmlp_base_rw": ((64, 128), (128, 256, 512, 1024), (2, 6, 12, 2), {"block_attention": False}),
    "maxxvitv2_rmlp_large_rw": (
        (80, 160), (160, 320, 640, 1280), (2, 6, 16, 2),
        {"block_attention": False, "head_hidden": 1280, "final_norm": False},
    ),
}  # fmt: skip
_MAXXVIT_SIZES = {"maxxvitv2_rmlp_base_rw": (224, 384), "maxxvitv2_rmlp_large_rw": (224,)}
MAXXVITS = tuple(
    _maxvit(f"{n}_{size}", stem, d, depth, tf=False,
            **{**_NEXT, "conv_layer_scale": 1e-6, "rel_pos": "mlp", "layer_scale": 1e-6, **knobs})
    for n, (stem, d, depth, knobs) in _MAXXVIT.items() for size in _MAXXVIT_SIZES.get(n, (256,))
)  # fmt: skip
COATNEXT = _timm(  # CoAtNeXt: timm's CoAtNet-nano with ConvNeXt blocks for MBConv (C-C-T-T)
    "coatnext_nano_rw_224", (32, 64), (64, 128, 256, 512), (3, 4, 6, 3), attn_width="in",
    **{**_NEXT, "conv_layer_scale": 1e-5},
)  # fmt: skip

MAXVITS = tuple(
    [_maxvit(f"maxvit_{n}_tf_{size}", (w, w), d, depth, tf=True,
             num_classes=21843 if (n, size) == ("xlarge", 224) else 1000)  # only released on ImageNet-21k
     for n, (w, d, depth) in _MAXVIT_TF.items() for size in (224, 384, 512)]
    + [_maxvit(f"maxvit_{n}_{size}", stem, d, depth, tf=False, **knobs)
       for n, (stem, d, depth, knobs) in _MAXVIT_RW.items() for size in _MAXVIT_RW_SIZES[n]]
)  # fmt: skip

TIMM_VARIANTS: dict[str, CoAtNetConfig] = {
    c.name: c
    for c in (
        _rw_max("coatnet_nano_rw_224", (32, 64), _WN, (3, 4, 6, 3), mbconv_stride="pool"),
        _rw_max(
            "coatnet_rmlp_nano_rw_224", (32, 64), _WN, (3, 4, 6, 3), rel_pos="mlp", rel_pos_mlp_hidden=384
        ),
        _rw_coat("coatnet_0_rw_224", (32, 64), _W0, (2, 3, 7, 2), se_early=True, attn_shortcut_bias=False),
        _rw_coat(
            "coatnet_bn_0_rw_224",
            (32, 64),
            _W0,
            (2, 3, 7, 2),
            mbconv_stride="dw",
            se_early=True,
            attn_shortcut_bias=False,
            attn_norm="batch",
        ),
        _rw_coat(
            "coatnet_1_rw_224",
            (32, 64),
            _W0,
            (2, 6, 14, 2),
            mbconv_stride="dw",
            se_early=True,
            attn_shortcut_bias=False,
        ),
        _rw_coat(
            "coatnet_rmlp_1_rw_224",
            (32, 64),
            _W0,
            (2, 6, 14, 2),
            pool="max3",
            se_early=True,
            attn_shortcut_bias=False,
            rel_pos="mlp",
            rel_pos_mlp_hidden=384,
        ),
        _rw_coat("coatnet_rmlp_1_rw2_224", (32, 64), _W0, (2, 6, 14, 2), mbconv_stride="dw", rel_pos="mlp"),
        _rw_coat("coatnet_2_rw_224", (64, 128), _W2, (2, 6, 14, 2), mbconv_stride="dw", se_act="silu"),
        _RMLP_2,
        _RMLP_2.replace(name="coatnet_rmlp_2_rw_384", img_size=(384, 384)),  # the same net, fine-tuned at 384
        _rw_coat(
            "coatnet_3_rw_224",
            (96, 192),
            _W3,
            (2, 6, 14, 2),
            mbconv_stride="dw",
            se_act="silu",
            layer_scale=1e-6,
        ),
        _paper_like("coatnet_0_224", 64, _W0, (2, 3, 5, 2)),
        _paper_like("coatnet_1_224", 64, _W0, (2, 6, 14, 2)),
        _paper_like("coatnet_2_224", 128, _W2, (2, 6, 14, 2)),
        _paper_like("coatnet_3_224", 192, _W3, (2, 6, 14, 2)),
        *MAXVITS,
        *MAXXVITS,
        COATNEXT,
    )
}
