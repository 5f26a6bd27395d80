"""Download timm's pretrained weights from the Hugging Face hub (docs/model-family.md), or say how not to.

timm hosts each pretrained model as the hub repository ``timm/<arch>.<pretrained tag>`` holding
``model.safetensors``; ``hf_hub_download`` fetches it once into the hub cache. Where the hub cannot be
reached (no network, ``HF_HUB_OFFLINE=1``, hub errors) :class:`HubUnavailableError` names the file's URL
and the offline route: fetch it by other means and import the local file. Nothing is written here;
huggingface_hub downloads to temporary files and moves them into its cache when complete.
"""

from __future__ import annotations

import inspect
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from tqdm.auto import tqdm

HUB_URL = "https://huggingface.co"
HUB_ORG = "timm"
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "pytorch_model.bin"  # only for a repository without safetensors; never unpickled

# timm's default pretrained tag for each CoAtNet architecture with weights (timm 1.0.31), so that a bare
# architecture name resolves as it does in timm.create_model(arch, pretrained=True).
# timm's published CoAtNet weights (timm 1.0.x), each arch's default tag first: tag -> number of classes
# and where its preprocessing differs from the _rw default (mean = std = 0.5, bicubic, crop 0.95).
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # timm's IMAGENET_DEFAULT_*
PRETRAINED_TAGS: dict[str, dict[str, Any]] = {
    "coatnet_nano_rw_224.sw_in1k": {"classes": 1000, "crop": 0.9},
    "coatnet_rmlp_nano_rw_224.sw_in1k": {"classes": 1000, "crop": 0.9},
    "coatnet_0_rw_224.sw_in1k": {"classes": 1000},
    "coatnet_bn_0_rw_224.sw_in1k": {
        "classes": 1000,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
    "coatnet_1_rw_224.sw_in1k": {"classes": 1000},
    "coatnet_rmlp_1_rw_224.sw_in1k": {"classes": 1000},
    "coatnet_rmlp_1_rw2_224.sw_in12k_ft_in1k": {"classes": 1000},
    "coatnet_rmlp_1_rw2_224.sw_in12k": {"classes": 11821},
    "coatnet_2_rw_224.sw_in12k_ft_in1k": {"classes": 1000},
    "coatnet_2_rw_224.sw_in12k": {"classes": 11821},
    "coatnet_rmlp_2_rw_224.sw_in12k_ft_in1k": {"classes": 1000},
    "coatnet_rmlp_2_rw_224.sw_in1k": {"classes": 1000},
    "coatnet_rmlp_2_rw_224.sw_in12k": {"classes": 11821},
    "coatnet_rmlp_2_rw_384.sw_in12k_ft_in1k": {"classes": 1000, "crop": 1.0},
    "coatnet_3_rw_224.sw_in12k": {"classes": 11821},
    # timm's MaxViTs: its own _rw_ weights, then the TensorFlow releases (the 384 and 512
    # fine-tunes keep timm's default mean = std = 0.5, as timm's configs say)
    "maxvit_nano_rw_256.sw_in1k": {"classes": 1000},
    "maxvit_tiny_rw_224.sw_in1k": {"classes": 1000},
    "maxvit_rmlp_pico_rw_256.sw_in1k": {"classes": 1000},
    "maxvit_rmlp_nano_rw_256.sw_in1k": {"classes": 1000},
    "maxvit_rmlp_tiny_rw_256.sw_in1k": {"classes": 1000},
    "maxvit_rmlp_small_rw_224.sw_in1k": {"classes": 1000, "crop": 0.9},
    "maxvit_rmlp_base_rw_224.sw_in12k_ft_in1k": {"classes": 1000},
    "maxvit_rmlp_base_rw_224.sw_in12k": {"classes": 11821},
    "maxvit_rmlp_base_rw_384.sw_in12k_ft_in1k": {"classes": 1000, "crop": 1.0},
    **{
        f"maxvit_{size}_tf_224.in1k": {"classes": 1000, **_IMAGENET}
        for size in ("tiny", "small", "base", "large")
    },
    **{
        f"maxvit_{size}_tf_{side}.in1k": {"classes": 1000, "crop": 1.0}
        for size in ("tiny", "small", "base", "large")
        for side in (384, 512)
    },
    **{f"maxvit_{size}_tf_224.in21k": {"classes": 21843} for size in ("base", "large", "xlarge")},
    **{
        f"maxvit_{size}_tf_{side}.in21k_ft_in1k": {"classes": 1000, "crop": 1.0}
        for size in ("base", "large", "xlarge")
        for side in (384, 512)
    },
    # timm's ConvNeXt-based MaxViTs and CoAtNeXt
    "maxxvit_rmlp_nano_rw_256.sw_in1k": {"classes": 1000},
    "maxxvit_rmlp_small_rw_256.sw_in1k": {"classes": 1000},
    "maxxvitv2_nano_rw_256.sw_in1k": {"classes": 1000},
    "maxxvitv2_rmlp_base_rw_224.sw_in12k_ft_in1k": {"classes": 1000},
    "maxxvitv2_rmlp_base_rw_224.sw_in12k": {"classes": 11821},
    "maxxvitv2_rmlp_base_rw_384.sw_in12k_ft_in1k": {"classes": 1000, "crop": 1.0},
    "coatnext_nano_rw_224.sw_in1k": {"classes": 1000, "crop": 0.9},
}

# arch -> its default pretrained tag (the first listed above), as timm resolves a bare name
DEFAULT_TAGS: dict[str, str] = {}
for _full in PRETRAINED_TAGS:
    _arch, _, _pretrained = _full.partition(".")
    DEFAULT_TAGS.setdefault(_arch, _pretrained)

_TAG = re.compile(r"(?P<arch>[A-Za-z0-9][A-Za-z0-9_\-]*)(?:\.(?P<tag>[A-Za-z0-9][A-Za-z0-9_.\-]*))?")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubUnavailableError(RuntimeError):
    """The hub could not be reached (offline, network or server error) and the file is not cached; the
    message says how to fetch the file by other means and import it offline.

    Args:
        tag: the full hub tag, ``<arch>.<pretrained tag>``.
        url: the URL of the weights file.
        reason: why the hub could not be reached, for the message.

    Attributes:
        tag: the full hub tag, ``<arch>.<pretrained tag>``.
        arch: the architecture name (the tag without its pretrained-tag suffix).
        url: the URL of the weights file, to fetch by other means.

    Examples:
        >>> import coatnet
        >>> error = coatnet.HubUnavailableError("coatnet_0_rw_224.sw_in1k", "https://host/w", "offline")
        >>> error.arch, "coatnet import-timm" in str(error)
        ('coatnet_0_rw_224', True)
    """

    def __init__(self, tag: str, url: str, reason: str):
        self.tag, self.arch, self.url = tag, split_tag(tag)[0], url
        local = f"/path/to/{url.rsplit('/', 1)[-1]}"
        super().__init__(
            f"Cannot download the weights of '{tag}' from the Hugging Face hub: {reason}.\n"
            f"Fetch this file by other means: {url}\n"
            f"then import it offline, in Python: coatnet.from_timm({local!r}, arch={self.arch!r})\n"
            f"or on the command line: coatnet import-timm {local} --arch {self.arch} "
            f"--out {self.arch}.safetensors"
        )


class HubModelNotFoundError(ValueError):
    """The hub has no such repository, or the repository holds no weights file."""


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split a timm hub tag into architecture and pretrained tag, as timm does.

    Args:
        tag: ``<arch>.<pretrained tag>`` (``"coatnet_0_rw_224.sw_in1k"``) or a bare ``<arch>``; a
            leading ``"timm/"`` (the repository's organisation) is accepted.

    Returns:
        ``(arch, pretrained_tag)``, with ``pretrained_tag`` None for a bare architecture name.

    Raises:
        ValueError: the tag is not of that form (empty, spaces, slashes, a dangling dot...).
    """
    name = tag.removeprefix(f"{HUB_ORG}/") if isinstance(tag, str) else ""
    match = _TAG.fullmatch(name)
    if match is None:
        raise ValueError(
            f"{tag!r} is not a timm hub tag: expected '<arch>.<pretrained tag>', "
            "e.g. 'coatnet_0_rw_224.sw_in1k'"
        )
    return match["arch"], match["tag"]


def resolve_tag(tag: str) -> str:
    """The full ``<arch>.<pretrained tag>`` for a tag, giving a bare CoAtNet name timm's default tag.

    Args:
        tag: a hub tag or a bare architecture name from :data:`DEFAULT_TAGS`.

    Returns:
        The full tag, the name of the hub repository under ``timm/``.

    Raises:
        ValueError: a malformed tag, or a bare name that is not a CoAtNet with timm weights.
    """
    arch, pretrained = split_tag(tag)
    if pretrained is None:
        if arch not in DEFAULT_TAGS:
            known = ", ".join(sorted(DEFAULT_TAGS))
            raise ValueError(
                f"{tag!r} has no pretrained tag and is not a known architecture: give "
                f"'<arch>.<pretrained tag>' (e.g. 'coatnet_0_rw_224.sw_in1k'), or one of {known}"
            )
        pretrained = DEFAULT_TAGS[arch]
    return f"{arch}.{pretrained}"


def weights_url(tag: str, filename: str = WEIGHTS_FILE, *, endpoint: str | None = None) -> str:
    """The download URL of a file in the hub repository ``timm/<tag>`` (main branch).

    Args:
        tag: a hub tag, or a bare architecture name from :data:`DEFAULT_TAGS`.
        filename: the file in the repository.
        endpoint: the hub's address, ``https://huggingface.co`` by default.

    Returns:
        ``<endpoint>/timm/<arch>.<pretrained tag>/resolve/main/<filename>``.
    """
    return f"{(endpoint or HUB_URL).rstrip('/')}/{HUB_ORG}/{resolve_tag(tag)}/resolve/main/{filename}"


def check_hub(tag: str, *, endpoint: str | None = None, timeout: float = 3.0) -> None:
    """Raise :class:`HubUnavailableError` at once unless the hub answers within ``timeout`` seconds.

    One ``HEAD`` request to the hub's address (any HTTP answer counts): a front end calls it before a
    download, so that a machine without network hears so in seconds instead of waiting through the hub
    client's timeouts and retries. Offline mode (``HF_HUB_OFFLINE``) raises without any request.
    """
    full_tag = resolve_tag(tag)
    url = weights_url(full_tag, endpoint=endpoint)
    if _hub_offline():
        raise HubUnavailableError(full_tag, url, "offline mode is on (HF_HUB_OFFLINE)")
    base = (endpoint or hf_constants.ENDPOINT or HUB_URL).rstrip("/")
    try:
        with urllib.request.urlopen(urllib.request.Request(base, method="HEAD"), timeout=timeout):
            return
    except urllib.error.HTTPError:  # it answered, if only to refuse: it is reachable
        return
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise HubUnavailableError(
            full_tag, url, f"{base} did not answer within {timeout:g} s ({_first_line(reason)})"
        ) from error


def download_timm_weights(
    tag: str,
    *,
    cache_dir: str | Path | None = None,
    progress: bool | type[tqdm] = True,
    endpoint: str | None = None,
) -> Path:
    """Download (or find in the hub cache) the weights of one of timm's pretrained models.

    Args:
        tag: ``<arch>.<pretrained tag>``, e.g. ``"coatnet_0_rw_224.sw_in1k"`` (repository
            ``timm/coatnet_0_rw_224.sw_in1k``), or a bare CoAtNet name for timm's default tag.
        cache_dir: the hub cache folder; huggingface_hub's default (``HF_HUB_CACHE``) when None.
        progress: show huggingface_hub's download progress bar; or a tqdm subclass that draws it
            (a front end's own bar, such as the app's).
        endpoint: the hub's address, for a mirror; huggingface_hub's default (``HF_ENDPOINT``) when None.

    Returns:
        The local path of ``model.safetensors`` in the cache; of ``pytorch_model.bin`` only for a
        repository without a safetensors file (load that with ``torch.load(weights_only=True)``).
        Offline, a cached file is returned without any network access.

    Raises:
        ValueError: a malformed tag, or a bare name that is not a CoAtNet with timm weights.
        HubModelNotFoundError: (a ValueError) no such repository on the hub, or no weights in it.
        HubUnavailableError: offline (``HF_HUB_OFFLINE=1``), or a network or hub failure, and the file
            is not in the cache; the message gives the URL to fetch and the offline import commands.
    """
    full_tag = resolve_tag(tag)
    repo_id = f"{HUB_ORG}/{full_tag}"
    try:
        return _fetch(repo_id, WEIGHTS_FILE, cache_dir=cache_dir, progress=progress, endpoint=endpoint)
    except _MissingFile:
        pass
    except HubUnavailableError:
        # an earlier download of a repository without safetensors left only the legacy file in the cache
        cached = try_to_load_from_cache(repo_id, LEGACY_WEIGHTS_FILE, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
        raise
    try:
        return _fetch(repo_id, LEGACY_WEIGHTS_FILE, cache_dir=cache_dir, progress=progress, endpoint=endpoint)
    except _MissingFile:
        raise HubModelNotFoundError(
            f"The hub repository {repo_id} holds neither {WEIGHTS_FILE} nor {LEGACY_WEIGHTS_FILE}"
        ) from None


def cached_timm_weights(tag: str, *, cache_dir: str | Path | None = None) -> Path | None:
    """The tag's weights file if the hub cache already holds it (no network), else None."""
    repo_id = f"{HUB_ORG}/{resolve_tag(tag)}"
    for filename in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
    return None


class _MissingFile(Exception):
    """The repository exists on the hub, but not this file in it."""


class _SilentTqdm(tqdm):
    """A progress bar that never shows (huggingface_hub's ``tqdm_class`` for ``progress=False``)."""

    def __init__(self, *args, **kwargs):
        kwargs.pop("name", None)
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _fetch(
    repo_id: str,
    filename: str,
    *,
    cache_dir: str | Path | None,
    progress: bool | type[tqdm],
    endpoint: str | None,
) -> Path:
    """``hf_hub_download`` of one file, its failures turned into this module's errors."""
    offline = _hub_offline()
    kwargs: dict[str, object] = {"cache_dir": cache_dir, "local_files_only": offline}
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    if _accepts(hf_hub_download, "tqdm_class"):
        if isinstance(progress, type):
            kwargs["tqdm_class"] = progress
        elif not progress:
            kwargs["tqdm_class"] = _SilentTqdm
    tag = repo_id.split("/", 1)[1]
    url = weights_url(tag, filename, endpoint=endpoint)
    try:
        return Path(hf_hub_download(repo_id, filename, **kwargs))
    except LocalEntryNotFoundError as error:  # before EntryNotFoundError: it is a subclass
        reason = (
            "offline mode is on (HF_HUB_OFFLINE) and the file is not in the hub cache"
            if offline or hf_constants.HF_HUB_OFFLINE
            else "the hub could not be reached and the file is not in the hub cache"
        )
        raise HubUnavailableError(tag, url, reason) from error
    except EntryNotFoundError as error:  # the repository exists, without this file
        raise _MissingFile(filename) from error
    except GatedRepoError as error:  # before RepositoryNotFoundError: it is a subclass
        raise HubModelNotFoundError(
            f"{repo_id} is gated on the Hugging Face hub: accept its terms there and log in (`hf auth login`)"
        ) from error
    except RepositoryNotFoundError as error:
        known = ", ".join(f"{arch}.{pretrained}" for arch, pretrained in DEFAULT_TAGS.items())
        raise HubModelNotFoundError(
            f"No such model on the Hugging Face hub: {repo_id}. Check the tag; timm's CoAtNet weights "
            f"(default tags) are {known}"
        ) from error
    except HfHubHTTPError as error:  # server errors, rate limits, refused authentication
        raise HubUnavailableError(tag, url, f"the hub answered: {_first_line(error)}") from error
    except Exception as error:
        if not _is_network_error(error):
            raise
        raise HubUnavailableError(tag, url, f"{type(error).__name__}: {_first_line(error)}") from error


def _hub_offline() -> bool:
    """Whether huggingface_hub's offline mode is on (its constant is read once, at its import)."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(hf_constants.HF_HUB_OFFLINE) or env in _TRUE


def _accepts(function: object, name: str) -> bool:
    """Whether ``function`` takes a keyword argument ``name`` (older huggingface_hub lacks some)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _is_network_error(error: Exception) -> bool:
    """An OS-level or HTTP-client failure (connection, timeout, TLS, proxy), told apart from bugs."""
    if isinstance(error, OSError):  # ConnectionError, TimeoutError, ssl.SSLError, OfflineModeIsEnabled
        return True
    clients = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}
    return any(cls.__module__.split(".")[0] in clients for cls in type(error).__mro__)


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, without a trailing period."""
    text = str(error).strip().splitlines()
    return text[0].rstrip(".") if text else type(error).__name__
