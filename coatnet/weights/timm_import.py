"""Import timm's CoAtNet weights into our own modules, with identical outputs (timm's maxxvit.py).

``from_timm`` takes a local ``model.safetensors`` / ``pytorch_model.bin`` (read without unpickling
anything: safetensors, or ``torch.load(weights_only=True)``) or a hub tag such as
``coatnet_0_rw_224.sw_in1k``. It converts key names, the head-first fused qkv layout, 1x1 convs to linear
layers and timm's bias-table layout, and carries timm's preprocessing and the class names along.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import torch
from tqdm import tqdm

from coatnet.data.preprocessing import Preprocessing
from coatnet.model.config import CoAtNetConfig
from coatnet.model.network import CoAtNet, build_for_loading
from coatnet.model.variants_timm import TIMM_VARIANTS
from coatnet.weights.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    CheckpointNotFoundError,
    load_state_dict_checked,
    resize_bias_tables,
    sniff,
)
from coatnet.weights.class_names import imagenet_class_names, label_space_name
from coatnet.weights.hub import DEFAULT_TAGS, PRETRAINED_TAGS, download_timm_weights, resolve_tag, split_tag

# timm's preprocessing for its _rw weights; PRETRAINED_TAGS names where a tag differs.
_RW = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "crop": 0.95}


def timm_preprocessing(
    arch: str, tag: str | None = None, *, img_size: tuple[int, int] | None = None
) -> Preprocessing:
    """timm's preprocessing for ``arch`` (and pretrained ``tag``): size, mean/std, bicubic, centre crop."""
    config = TIMM_VARIANTS[arch]
    tag = tag or DEFAULT_TAGS.get(arch)
    known = PRETRAINED_TAGS.get(f"{arch}.{tag}", {})
    merged = {**_RW, **{k: v for k, v in known.items() if k != "classes"}}
    return Preprocessing(size=img_size or config.img_size, channels=3, **merged)


def convert_state_dict(state: dict[str, torch.Tensor], config: CoAtNetConfig) -> dict[str, torch.Tensor]:
    """timm ``maxxvit`` keys and layouts -> ours, for a model built from ``config``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(("relative_position_index", "rel_coords_log")):
            continue  # derived buffers, rebuilt by our modules
        new = key
        new = new.replace(".se_early.", ".se.")
        new = re.sub(r"\.norm1\.norm\.", ".norm1.", new)  # first Transformer block: Sequential(norm, down)
        new = new.replace("head.pre_logits.fc.", "head.pre_logits.")
        # a ConvNeXt block's projection where the width changes without a stride: a bare 1x1 conv
        new = re.sub(r"\.shortcut\.(weight|bias)$", r".shortcut.expand.\1", new)
        if new.endswith("rel_pos.relative_position_bias_table"):
            new = new.replace("relative_position_bias_table", "table")
            # TensorFlow MaxViTs keep (heads, 2H-1, 2W-1) indexed key - query: ours is query - key
            value = value.flip(-2, -1).contiguous() if value.ndim == 3 else _table_from_timm(value)
        elif re.search(r"\.attn(_block|_grid)?\.qkv\.", new) and _qkv_head_first(config):
            value = _qkv_from_timm(value, config.head_dim)
        if value.ndim == 4 and value.shape[-2:] == (1, 1) and _is_linear(new):
            value = value.flatten(1)  # a 1x1 conv stored as Conv2d [O, I, 1, 1] -> Linear [O, I]
        out[new] = value
    return out


def _qkv_head_first(config: CoAtNetConfig) -> bool:
    """Whether timm's fused qkv of ``config``'s arch is head-first (its CoAtNets and ``_rw`` MaxViTs);
    the TensorFlow MaxViTs (``_tf_``) keep q, k and v apart, as ours does."""
    return not (config.name.startswith("maxvit_") and "_tf_" in config.name)


def _is_linear(key: str) -> bool:
    return any(part in key for part in (".attn.qkv.", ".attn.proj.", ".mlp.fc1.", ".mlp.fc2."))


def _table_from_timm(table: torch.Tensor) -> torch.Tensor:
    """((2H-1)(2W-1), heads) with row (dy + H - 1)(2W - 1) + (dx + W - 1), dy = query - key -> the
    paper's P (heads, 2H-1, 2W-1). Square grids only, as timm's CoAtNets are."""
    entries, heads = table.shape
    side = round(entries**0.5)
    if side * side != entries:
        raise CheckpointError(f"a relative-position table of {entries} entries is not square")
    return table.t().reshape(heads, side, side).contiguous()


def _qkv_from_timm(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Head-first fused qkv (channel = head * 3d + s * d + e) -> ours (s * heads * d + head * d + e)."""
    width = weight.shape[0] // 3
    heads = width // head_dim
    rest = weight.shape[1:]
    return weight.reshape(heads, 3, head_dim, *rest).transpose(0, 1).reshape(3 * width, *rest).contiguous()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a timm weights file: ``.safetensors``, or a ``.bin`` / ``.pth`` read with
    ``torch.load(weights_only=True)`` (no arbitrary code runs); ``state_dict`` / ``model`` wrappers are
    unwrapped."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointNotFoundError(f"{path} does not exist: check the path")
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory; give the weights file inside it")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({error}); it may be truncated: fetch it again"
            ) from error
    what = sniff(path)
    if what is not None and "pickle" not in what and "zip" not in what:
        raise CheckpointError(f"{path} is {what}, not a checkpoint: give a .safetensors or .pth weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or unsafe files
        # torch's own message advises weights_only=False, which would run the file's code: not quoted
        unsafe = "weights only load failed" in str(error).lower()
        reason = "it holds Python objects, not only tensors" if unsafe else "it is damaged or truncated"
        raise CheckpointError(
            f"{path} could not be read as PyTorch weights: {reason} (CoAtNet Lens never unpickles "
            "objects); use the model.safetensors file from the hub instead"
        ) from error
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def recognise_arch(state: dict[str, torch.Tensor]) -> str:
    """The timm arch whose converted keys and shapes a state dict fits exactly; a clear error otherwise."""
    num_classes = _num_classes(state)
    img_size = _img_size_from_tables(state)
    state = {key: value.to("meta") for key, value in state.items()}  # shapes are all it compares
    fits = []
    windowed = any(".attn_grid." in key for key in state)  # only the MaxViT family has grid attention
    depths = _stage_depths(state)
    for name, config in TIMM_VARIANTS.items():
        if config.windowed != windowed or tuple(config.depths) != depths:  # before a build of its shapes
            continue
        candidate = config.replace(num_classes=num_classes, img_size=img_size or config.img_size)
        own = _shapes(candidate)
        try:
            converted = convert_state_dict(state, candidate)
        except (RuntimeError, ValueError):  # a fused qkv that does not split into this arch's heads
            continue
        if set(own) == set(converted) and all(own[k] == converted[k].shape for k in own):
            fits.append(name)
    if not fits:
        raise CheckpointError(
            "these weights fit none of timm's CoAtNets that we import "
            f"({', '.join(sorted(TIMM_VARIANTS))}); name the architecture with arch=... (or --arch) "
            "to see which keys differ"
        )
    # Only timm's 224 and 384 builds of one relative-position-MLP arch share every tensor; the 224 one is
    # listed first, and from_timm(..., img_size=384) runs it at 384 with the same weights.
    return fits[0]


def _stage_depths(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The number of blocks of each stage, as timm's keys (``stages.2.blocks.4.``) number them."""
    depths: dict[int, int] = {}
    for key in state:
        if found := _BLOCK_KEY.match(key):
            stage, block = int(found[1]), int(found[2])
            depths[stage] = max(depths.get(stage, 0), block + 1)
    return tuple(depths[stage] for stage in sorted(depths))


_BLOCK_KEY = re.compile(r"stages\.(\d+)\.blocks\.(\d+)\.")


@functools.lru_cache(maxsize=64)
def _shapes(config: CoAtNetConfig) -> dict[str, torch.Size]:
    """The shape of each tensor in the state dict of ``CoAtNet(config)`` (built once per config on the
    meta device: recognising one file compares it with every architecture)."""
    with torch.device("meta"):
        return {key: value.shape for key, value in CoAtNet(config).state_dict().items()}


def _num_classes(state: dict[str, torch.Tensor]) -> int:
    weight = state.get("head.fc.weight")
    return int(weight.shape[0]) if weight is not None else 0


def _img_size_from_tables(state: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """The input size implied by the S4 bias tables (grid x 32), or None for relative-position MLPs."""
    for key in sorted(state, reverse=True):
        if key.endswith("relative_position_bias_table"):
            table = state[key]  # ((2H-1)(2W-1), heads), or a TensorFlow MaxViT's (heads, 2H-1, 2W-1)
            side = (table.shape[-1] + 1) // 2 if table.ndim == 3 else (round(table.shape[0] ** 0.5) + 1) // 2
            return (side * 32, side * 32)  # S4's grid, or a MaxViT's window: the input / 32 either way
    return None


def from_timm(
    tag_or_path: str | os.PathLike,
    *,
    arch: str | None = None,
    attention: str = "pre",
    img_size: int | tuple[int, int] | None = None,
    progress: bool | type[tqdm] = True,
) -> CoAtNet:
    """A timm CoAtNet as our model, in eval mode, with identical outputs.

    Args:
        tag_or_path: a local ``model.safetensors`` / ``pytorch_model.bin``, or a hub tag such as
            ``coatnet_0_rw_224.sw_in1k`` (downloaded into the Hugging Face cache, with a progress bar).
        arch: the timm architecture (e.g. ``coatnet_0_rw_224``); recognised from the tensors if omitted.
        attention: ``pre`` (how every timm CoAtNet was trained) or ``post`` (same weights, bias added
            after the softmax; the metadata says it was trained with pre-normalization).
        img_size: run at another input size; bias tables are bilinearly resized.
        progress: show the download's progress bar, or a tqdm subclass to draw it with.

    Returns:
        The model, with ``model.checkpoint_info`` carrying timm's preprocessing, the class names and
        where the weights came from; ``coatnet.save_checkpoint`` writes it as our checkpoint.

    Raises:
        HubUnavailableError: the hub cannot be reached and the file is not cached; the message says
            how to fetch it by other means.

    Examples:
        ``coatnet.from_timm("coatnet_0_rw_224.sw_in1k")`` downloads timm's weights once (then reads the
        hub cache); offline, a tag that is not cached raises with the URL to fetch by other means:

        >>> import os, coatnet
        >>> os.environ["HF_HUB_OFFLINE"] = "1"
        >>> try:
        ...     coatnet.from_timm("coatnet_nano_rw_224.sw_in1k")
        ... except coatnet.HubUnavailableError as error:
        ...     print(error.url)
        https://huggingface.co/timm/coatnet_nano_rw_224.sw_in1k/resolve/main/model.safetensors
        >>> del os.environ["HF_HUB_OFFLINE"]
    """
    source = os.path.expanduser(str(tag_or_path))
    tag = None
    if Path(source).is_file():
        path = Path(source)
    elif Path(source).suffix in (".safetensors", ".bin", ".pth") or os.sep in source:
        raise FileNotFoundError(f"no weights file at {source}: check the path")
    else:
        source = resolve_tag(source) if split_tag(source)[0] in DEFAULT_TAGS else source
        tag_arch, tag = split_tag(source)
        if tag_arch not in TIMM_VARIANTS:
            raise ValueError(
                f"unknown timm CoAtNet {tag_arch!r}; importable: {', '.join(sorted(TIMM_VARIANTS))}"
            )
        if arch is not None and split_tag(arch)[0] != tag_arch:
            raise ValueError(f"arch={arch!r} contradicts the tag {source!r}")
        arch = tag_arch
        path = download_timm_weights(source, progress=progress)
    state = read_state_dict(path)
    if arch is None:
        arch = recognise_arch(state)
    arch = split_tag(arch)[0]
    if arch not in TIMM_VARIANTS:
        raise ValueError(f"unknown timm CoAtNet {arch!r}; importable: {', '.join(sorted(TIMM_VARIANTS))}")
    base = TIMM_VARIANTS[arch]
    built_at = _img_size_from_tables(state) or base.img_size
    config = base.replace(num_classes=_num_classes(state), img_size=built_at)
    model = build_for_loading(config)
    load_state_dict_checked(model, convert_state_dict(state, config), source=f"{path} (as timm {arch})")
    if img_size is not None or attention != "pre":
        final = config.replace(attention=attention, img_size=img_size or config.img_size)
        switched = build_for_loading(final)
        switched.load_state_dict(resize_bias_tables(model.state_dict(), switched))
        model, config = switched, final
    names = imagenet_class_names(config.num_classes)
    model.checkpoint_info = CheckpointInfo(
        config=config,
        preprocessing=timm_preprocessing(arch, tag, img_size=config.img_size),
        class_names=names,
        provenance={
            "source": "timm",
            "arch": arch,
            "pretrained_tag": tag,
            "file": str(path),
            "label_space": label_space_name(config.num_classes) or f"{config.num_classes} classes",
            "class_names": "ImageNet names" if names else "none at hand: classes are shown as indices",
        },
        trained_attention="pre",
        path=None,
    )
    return model.eval()
