"""The table of named CoAtNet variants and the ``create_model`` factory.

Paper variants follow the paper's Table 3 and Tables 11-12 (docs/model-family.md): blocks/channels per
stage S0..S4. Small variants are ours, for CPU demos and tests.
"""

from __future__ import annotations

import difflib
from typing import Any

from coatnet.model.config import BlockGroup, CoAtNetConfig, StageConfig, stage
from coatnet.model.layouts import LAYOUTS as LAYOUT_TABLE
from coatnet.model.layouts import find_layout
from coatnet.model.network import CoAtNet
from coatnet.model.variants_timm import TIMM_VARIANTS

LAYOUTS = tuple(layout.label for layout in LAYOUT_TABLE if layout.kinds)  # those of S1..S4 kinds, not ViT_REL


def _paper(name: str, stem_dim: int, s1, s2, s3, s4, *, head_dim: int = 32) -> CoAtNetConfig:
    """A C-C-T-T model from (blocks, channels) of S1..S4; a list in S3 means MBConv then Transformer."""
    s3_stage = (
        StageConfig(groups=(BlockGroup("C", *s3[0]), BlockGroup("T", *s3[1])))
        if isinstance(s3, list)
        else stage("T", *s3)
    )
    return CoAtNetConfig(
        name=name,
        stem_dim=stem_dim,
        stages=(stage("C", *s1), stage("C", *s2), s3_stage, stage("T", *s4)),
        head_dim=head_dim,
    )


def _layout(layout: str, dims: tuple[int, int, int, int]) -> CoAtNetConfig:
    """A layout-study model: a two-conv stem of 24 channels with stride 2, then S1..S4 of ``layout`` with
    depths 1-2-2-1 and widths ``dims``, strides 1-1-2-1 (grids 14, 14, 7, 7 at 28x28), heads of 16."""
    found = find_layout(layout)
    kinds = found.kinds
    return CoAtNetConfig(
        name=found.variant,
        stem_dim=24,
        stages=tuple(stage(k, d, c) for k, d, c in zip(kinds, (1, 2, 2, 1), dims, strict=True)),
        strides=(2, 1, 1, 2, 1),
        head_dim=16,
        img_size=(28, 28),
        num_classes=10,
    )


VARIANTS: dict[str, CoAtNetConfig] = {
    # Table 3 / Tables 11-12: S0 is always two convs; (blocks, channels) for S1..S4.
    "coatnet_0": _paper("coatnet_0", 64, (2, 96), (3, 192), (5, 384), (2, 768)),
    "coatnet_1": _paper("coatnet_1", 64, (2, 96), (6, 192), (14, 384), (2, 768)),
    "coatnet_2": _paper("coatnet_2", 128, (2, 128), (6, 256), (14, 512), (2, 1024)),
    "coatnet_3": _paper("coatnet_3", 192, (2, 192), (6, 384), (14, 768), (2, 1536)),
    "coatnet_4": _paper("coatnet_4", 192, (2, 192), (12, 384), (28, 768), (2, 1536)),
    "coatnet_5": _paper("coatnet_5", 192, (2, 256), (12, 512), (28, 1280), (2, 2048), head_dim=64),
    "coatnet_6": _paper(
        "coatnet_6", 192, (2, 192), (4, 384), [(8, 768), (42, 1536)], (2, 2048), head_dim=128
    ),
    "coatnet_7": _paper(
        "coatnet_7", 192, (2, 256), (4, 512), [(8, 1024), (42, 2048)], (2, 3072), head_dim=128
    ),
    # The layout study's ViT_REL (section 2.2): a 16x16 patch stem, then relative-attention blocks only,
    # 12 blocks of width 384 (ViT-S/16 scale) kept in S1..S4 so every analysis sees five stages.
    "vit_rel": CoAtNetConfig(
        name="vit_rel",
        stem_dim=384,
        stem_kind="patch",
        stages=(stage("T", 2, 384), stage("T", 3, 384), stage("T", 5, 384), stage("T", 2, 384)),
        strides=(16, 1, 1, 1, 1),
    ),
    # Ours, for CPU demos and tests: same layout, narrower and shallower.
    "coatnet_nano": _paper("coatnet_nano", 48, (2, 48), (2, 96), (3, 192), (2, 384)),
    "coatnet_pico": _paper("coatnet_pico", 32, (1, 32), (2, 64), (2, 128), (1, 256)),
    # demo-maxvit's MaxViT for Fashion-MNIST: 28x28 with the demos' strides 2-1-1-2-1, so S1 and S2
    # run on 14x14 grids where 7x7 windows (block attention) and a 7x7 grid dilated by 2 (grid attention)
    # differ, and S3-S4 on 7x7, where both are global; heads of 16 (S1 2 heads .. S4 16).
    "maxvit_pico": CoAtNetConfig(
        name="maxvit_pico",
        stem_dim=32,
        stages=(stage("M", 1, 32), stage("M", 1, 64), stage("M", 2, 128), stage("M", 1, 256)),
        strides=(2, 1, 1, 2, 1),
        head_dim=16,
        window_size=7,
        grid_size=7,
        mbconv_stride="dw",
        pool="avg",
        img_size=(28, 28),
        num_classes=10,
    ),
    "coatnet_toy": CoAtNetConfig(
        name="coatnet_toy",
        stem_dim=16,
        stages=(stage("C", 1, 16), stage("C", 1, 16), stage("T", 1, 32), stage("T", 1, 32)),
        head_dim=8,
        img_size=(32, 32),
        num_classes=10,
    ),
    # The layout study at small scale (coatnet/training/layouts.py): 28x28 inputs, S3 on a 7x7 grid in every
    # layout,
    # depths 1-2-2-1, widths chosen so that the parameters stay within 15% (439k-474k).
    "layout_c_c_c_c": _layout("C-C-C-C", (32, 64, 96, 128)),
    "layout_c_c_c_t": _layout("C-C-C-T", (32, 64, 96, 112)),
    "layout_c_c_t_t": _layout("C-C-T-T", (32, 64, 80, 128)),
    "layout_c_t_t_t": _layout("C-T-T-T", (32, 48, 80, 144)),
    "layout_vit_rel": CoAtNetConfig(
        name="layout_vit_rel",
        stem_dim=80,
        stem_kind="patch",
        stages=(stage("T", 1, 80), stage("T", 2, 80), stage("T", 2, 80), stage("T", 1, 80)),
        strides=(4, 1, 1, 1, 1),  # a 4x4 patch stem: the same 7x7 grid as the others' S3
        head_dim=16,
        img_size=(28, 28),
        num_classes=10,
    ),
    # timm's CoAtNets (docs/model-family.md), for exact weight import: coatnet/model/variants_timm.py
    **TIMM_VARIANTS,
}


def list_models(pattern: str = "") -> list[str]:
    """Names of the known variants, optionally only those containing ``pattern``.

    Args:
        pattern: a substring the names must contain (``""``: every variant).

    Returns:
        The names, sorted.

    Examples:
        >>> import coatnet
        >>> coatnet.list_models("pico")
        ['coatnet_pico', 'maxvit_pico', 'maxvit_pico_rw_256', 'maxvit_rmlp_pico_rw_256']
    """
    return sorted(name for name in VARIANTS if pattern in name)


def get_config(name: str) -> CoAtNetConfig:
    """The base config of a named variant (``CoAtNet-0`` reads as ``coatnet_0``); an unknown name gets a
    clear error with close names."""
    key = name.strip().lower().replace("-", "_")
    if key not in VARIANTS:
        close = difflib.get_close_matches(key, VARIANTS, n=3, cutoff=0.75)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}")
    return VARIANTS[key]


def build_config(
    name: str,
    *,
    attention: str = "pre",
    layout: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int = 3,
    num_classes: int | None = None,
    **overrides: Any,
) -> CoAtNetConfig:
    """The config ``create_model`` builds; see there for the arguments."""
    base = get_config(name)
    stages = base.stages
    depths, dims = overrides.pop("depths", None), overrides.pop("dims", None)
    if layout is not None or depths is not None or dims is not None:
        stages = _reshape_stages(base, layout=layout, depths=depths, dims=dims)
    known = set(CoAtNetConfig.__dataclass_fields__) - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown override(s) {unknown}; allowed: depths, dims, {', '.join(sorted(known))}")
    changes: dict[str, Any] = dict(
        stages=overrides.pop("stages", stages),
        attention=attention,
        in_chans=in_chans,
        img_size=base.img_size if img_size is None else img_size,
        num_classes=base.num_classes if num_classes is None else num_classes,
        **overrides,
    )
    return base.replace(**changes)


def create_model(
    name: str,
    *,
    attention: str = "pre",
    layout: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int = 3,
    num_classes: int | None = None,
    **overrides: Any,
) -> CoAtNet:
    """Build a named CoAtNet.

    Args:
        name: a variant from :func:`list_models`, e.g. ``coatnet_0`` .. ``coatnet_7``, ``vit_rel``.
        attention: ``pre`` (Eq. 3, the paper's) or ``post`` normalization of the relative bias.
        layout: S1..S4 block kinds, one of ``C-C-C-C``, ``C-C-C-T``, ``C-C-T-T``, ``C-T-T-T`` (the
            layout study, section 2.2), keeping the variant's depths and widths.
        img_size: the input size to build for (default: the variant's, 224 for the paper's models).
        in_chans: input channels.
        num_classes: classifier outputs (default: the variant's, 1000 for the paper's models).
        **overrides: any :class:`CoAtNetConfig` field (``strides``, ``drop_path_rate``, ``dropout``,
            ``mbconv_stride``, ``head_dim``, ``stem_dim``...), plus ``depths`` and ``dims`` (S1..S4).

    Returns:
        The model, in training mode, with freshly initialised weights.

    Raises:
        ValueError: an unknown name, layout or field, or a size the strides do not divide.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.create_model("coatnet_toy", img_size=32, attention="post", layout="C-C-C-T")
        >>> model.config.layout, model.config.attention
        ('C-C-C-T', 'post')
        >>> pico = coatnet.create_model(
        ...     "coatnet_pico", img_size=28, in_chans=1, num_classes=10, strides=(2, 1, 1, 2, 1)
        ... )
        >>> pico.eval()(torch.randn(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """
    config = build_config(
        name,
        attention=attention,
        layout=layout,
        img_size=img_size,
        in_chans=in_chans,
        num_classes=num_classes,
        **overrides,
    )
    return CoAtNet(config)


def _reshape_stages(
    base: CoAtNetConfig,
    *,
    layout: str | None,
    depths: tuple[int, ...] | None,
    dims: tuple[int, ...] | None,
) -> tuple[StageConfig, ...]:
    if any(len(s.groups) > 1 for s in base.stages):
        raise ValueError(f"{base.name} has a mixed stage; build it with explicit `stages=` instead")
    if layout is not None:
        if layout.upper().replace("-", "_") == "VIT_REL":
            raise ValueError('ViT_REL is a variant of its own: create_model("vit_rel")')
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    kinds = layout.split("-") if layout is not None else [s.kind for s in base.stages]
    depths = tuple(depths) if depths is not None else base.depths
    dims = tuple(dims) if dims is not None else base.dims
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(f"depths and dims name S1..S4 (four values each), got {depths} and {dims}")
    return tuple(stage(k, d, c) for k, d, c in zip(kinds, depths, dims, strict=True))
