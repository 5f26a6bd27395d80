"""timm's CoAtNets as configs of our own blocks (PAPER.md section 5), so their weights load exactly.

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
    )
}
