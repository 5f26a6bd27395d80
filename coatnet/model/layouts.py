"""The layout study's five layouts (the paper's section 2.2), each named once: its label (``C-C-T-T``,
``ViT_REL``), its variant (``layout_c_c_t_t``), its built-in checkpoint (``layout-c-c-t-t``) and the short
form its run folders and shipped results use (``c-c-t-t``). Every spelling is read from :data:`LAYOUTS`
and :func:`find_layout` takes any of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """One layout of the layout study.

    Attributes:
        label: the paper's name, as the study, its figures and its colours say it: ``C-C-T-T``,
            ``ViT_REL``.
        kinds: the block kind of S1..S4 (``C`` MBConv, ``T`` Transformer); None for ViT_REL, a patch stem
            and Transformer blocks only (a variant of its own).

    Examples:
        >>> from coatnet.model.layouts import find_layout
        >>> found = find_layout("C-C-T-T")
        >>> found.variant, found.checkpoint, found.short, found.kinds
        ('layout_c_c_t_t', 'layout-c-c-t-t', 'c-c-t-t', ('C', 'C', 'T', 'T'))
    """

    label: str
    kinds: tuple[str, ...] | None

    @property
    def short(self) -> str:
        """``c-c-t-t``, ``vit-rel``: the label in lower case with dashes (run folders, result names)."""
        return self.label.lower().replace("_", "-")

    @property
    def variant(self) -> str:
        """The variant :func:`coatnet.create_model` builds at small scale: ``layout_c_c_t_t``."""
        return "layout_" + self.short.replace("-", "_")

    @property
    def checkpoint(self) -> str:
        """The built-in checkpoint trained by the study on all its images: ``layout-c-c-t-t``."""
        return "layout-" + self.short

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every name this layout goes by."""
        return (self.label, self.short, self.variant, self.checkpoint)


LAYOUTS: tuple[Layout, ...] = (
    Layout("C-C-C-C", ("C", "C", "C", "C")),
    Layout("C-C-C-T", ("C", "C", "C", "T")),
    Layout("C-C-T-T", ("C", "C", "T", "T")),
    Layout("C-T-T-T", ("C", "T", "T", "T")),
    Layout("ViT_REL", None),
)
"""The five layouts, in the study's order (section 2.2).

Examples:
    >>> from coatnet.model.layouts import LAYOUTS
    >>> [layout.label for layout in LAYOUTS]
    ['C-C-C-C', 'C-C-C-T', 'C-C-T-T', 'C-T-T-T', 'ViT_REL']
"""


def find_layout(name: str) -> Layout:
    """The layout ``name`` spells in any of its forms (label, short form, variant, checkpoint).

    Args:
        name: ``C-C-T-T``, ``c-c-t-t``, ``layout_c_c_t_t``, ``layout-c-c-t-t`` ...

    Returns:
        The layout.

    Raises:
        ValueError: no layout is named so; the labels are listed.

    Examples:
        >>> from coatnet.model.layouts import find_layout
        >>> find_layout("layout-vit-rel").label, find_layout("layout_c_t_t_t").label
        ('ViT_REL', 'C-T-T-T')
    """
    text = str(name).strip()
    for layout in LAYOUTS:
        if text in layout.spellings:
            return layout
    labels = ", ".join(layout.label for layout in LAYOUTS)
    raise ValueError(f"no layout is named {text!r}: the layouts are {labels}")
