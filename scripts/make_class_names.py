"""Write the ImageNet class-name files shipped in ``coatnet/data/`` from timm's own label info files.

A dev tool, run once by hand; the package never imports it (nor timm). For each label space it writes
``<space>_synsets.txt`` (one WordNet synset id per line, in timm's class-index order) and
``<space>_classes.txt`` (the synset's WordNet lemmas, the readable name, on the same line number).
This is what timm's ``ImageNetInfo(subset).index_to_description(i)`` gives for class ``i``.

Usage:
    python scripts/make_class_names.py [--timm-info DIR] [--out coatnet/data]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path

# label space in coatnet/data -> timm's synset file (timm/data/imagenet_info.py, `_SUBSETS`)
LABEL_SPACES = {
    "imagenet1k": "imagenet_synsets.txt",
    "imagenet12k": "imagenet12k_synsets.txt",
    "imagenet21k": "imagenet21k_goog_synsets.txt",  # the 21,843 classes of the TensorFlow MaxViTs' heads
}
LEMMA_FILE = "imagenet_synset_to_lemma.txt"
ROOT = Path(__file__).resolve().parents[1]


def timm_info_dir() -> Path:
    """The ``timm/data/_info`` folder of the installed timm, found without importing timm.

    Returns:
        The folder that holds timm's synset and lemma files.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("timm is not installed: pass --timm-info DIR (a timm/data/_info folder)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def class_names(info: Path, synset_file: str) -> tuple[list[str], list[str]]:
    """Synset ids and readable names of one label space, in timm's class-index order.

    Args:
        info: timm's ``data/_info`` folder.
        synset_file: the label space's synset list in that folder.

    Returns:
        (synsets, names), one entry per class.
    """
    synsets = read_lines(info / synset_file)
    with (info / LEMMA_FILE).open(encoding="utf-8", newline="") as f:
        lemmas = dict(csv.reader(f, delimiter="\t"))
    names = [lemmas[synset].strip() for synset in synsets]
    if len(set(synsets)) != len(synsets) or not all(names):
        raise SystemExit(f"{synset_file}: duplicate synsets or empty names")
    return synsets, names


def write_lines(path: Path, lines: list[str]) -> None:
    """Write one entry per line, UTF-8, with a final newline."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Write ``<space>_synsets.txt`` and ``<space>_classes.txt`` for every label space."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-info", type=Path, default=None, help="timm's data/_info folder")
    parser.add_argument("--out", type=Path, default=ROOT / "coatnet" / "weights" / "class_name_files")
    args = parser.parse_args(argv)
    info = args.timm_info or timm_info_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    for space, synset_file in LABEL_SPACES.items():
        synsets, names = class_names(info, synset_file)
        write_lines(args.out / f"{space}_synsets.txt", synsets)
        write_lines(args.out / f"{space}_classes.txt", names)
        print(f"{space}: {len(names)} classes from {info / synset_file}")


if __name__ == "__main__":
    main()
