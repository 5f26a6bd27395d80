"""Serve the app: ``python -m app.serve [streamlit flags]`` is ``streamlit run app/main.py [flags]`` with the
code every page runs imported and warmed first, in the server's own process (``make app``, ``coatnet app``
and the browser tests serve it so).

Streamlit imports a page's modules on the first visit, in that visit's run: torch, the model family, the
analyses and Plotly cost that visitor seconds. Here they are imported before the server answers, and the
default model runs once on the gallery's first image, through its attention maps to a figure, Grad-CAM,
receptive fields and its cost count, so that PyTorch's kernels, autograd, captum, the FLOP counter and
Plotly's property validators are ready too. What is warmed is thrown away: the app's own caches
(``app.cache``) fill on the first visit as before (they belong to Streamlit's runtime, which starts after
this).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

MAIN = Path(__file__).resolve().with_name("main.py")


def warm(model_spec: str = "demo-pre") -> float:
    """Import what every page imports and run ``model_spec`` once on the first gallery image, through its
    attention maps to the explorer's figure, Grad-CAM at every stage, receptive fields and its cost count;
    returns the seconds it took. A failure here is not the server's: it is named in one line, and the
    first visit pays as it would have and says what went wrong itself.

    Args:
        model_spec: the model the app opens on (:func:`analysis.load_model`'s spec).

    Returns:
        Seconds spent.

    Examples:
        >>> from app.serve import warm
        >>> warm() >= 0
        True
    """
    start = time.perf_counter()
    try:
        import plotly.graph_objects  # noqa: F401
        import torch  # noqa: F401

        import analysis
        from analysis.figures import fused_attention_figure
        from app import gallery
        from coatnet import stage_costs

        model = analysis.load_model(model_spec)
        kind = gallery.kind_for(model.config.num_classes, model.config.in_chans)
        image = gallery.samples(kind)[0].image()
        maps = analysis.attention_maps(model, image)
        if maps.blocks:
            batch = analysis.as_batch(image, model)
            seen = analysis.display_image(batch[0], analysis.preprocessing_of(model))
            fused_attention_figure(maps.blocks[0], seen, 0).to_json()
        # what a page's default view pays once per process: captum's import (Grad-CAM, the Stage
        # inspector), the FLOP counter's first pass (the Model page), the first backward pass
        analysis.gradcam_stages(model, image)
        analysis.receptive_fields(model, image)
        stage_costs(model)
    except Exception as error:  # the visit that needs it says what went wrong, in the app
        print(f"app.serve: warming up skipped ({type(error).__name__}: {error})", file=sys.stderr)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Warm up (:func:`warm`), then hand over to Streamlit's ``run`` of app/main.py with ``argv``'s flags."""
    flags = sys.argv[1:] if argv is None else argv
    warm()
    from streamlit.web import cli

    cli.main(["run", str(MAIN), *flags], prog_name="streamlit")


if __name__ == "__main__":
    main()
