"""How long the app's server takes to answer, on the built-in demo checkpoints (CPU); what a user feels in
the browser is benchmarks/app_speed.py's.

Two figures, each beside its peer in the same run:

* server time to redraw after a new query (what a click on a heatmap cell costs): Streamlit's AppTest
  runs the explorer script with warm caches; the peer is the same run with every cache cleared, i.e. what
  the app would cost without ``st.cache_data`` / ``st.cache_resource``. AppTest adds its own overhead
  (a script thread, message parsing), so these are upper bounds on the server's time.
* the first page after start-up: ``streamlit run app/main.py`` started, Chromium pointed at it, until the
  explorer's figures are drawn (server start, imports, model load, analysis, and the browser's drawing).

Run from the repository root: ``python benchmarks/app_server_speed.py`` (``--no-browser`` skips the
second); ``python benchmarks/app_server_speed.py --at-224`` times every page on timm's coatnet_0_rw_224
architecture at 224 instead. Writes ``benchmarks/results/app_server_speed.json`` or
``app_server_speed_224.json`` (``benchmarks/results_file.py``'s format; ``--out`` names another). The
script was benchmarks/app_speed.py until that name went to the browser's measures: the results it wrote
then keep that command.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks import results_file  # noqa: E402

MAIN = str(ROOT / "app" / "main.py")


FIRST_FIGURE: dict[str, float | None] = {"start": None, "at": None}


def watch_first_figure() -> None:
    """Note when a run draws its first figure (``app.render.figure``, which every page draws through): the
    streamed page's first answer, while the rest is computed."""
    from app import render

    drawn = render.figure

    def noted(*args, **kwargs):
        if FIRST_FIGURE["at"] is None:
            FIRST_FIGURE["at"] = time.perf_counter()
        return drawn(*args, **kwargs)

    render.figure = noted


def first_figure_s() -> float | None:
    """Seconds from the start of the last :func:`timed_run` to its first figure (None: no figure)."""
    at, start = FIRST_FIGURE["at"], FIRST_FIGURE["start"]
    return None if at is None or start is None else at - start


def timed_run(at: AppTest) -> float:
    start = time.perf_counter()
    FIRST_FIGURE.update(start=start, at=None)
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception or at.error:
        raise RuntimeError([e.message for e in at.exception] + [e.value for e in at.error])
    return elapsed


def redraws(model: str, clicks: int, seed: int) -> dict[str, float]:
    """Median and worst server time of a query change, warm and with every cache cleared."""
    import streamlit as st

    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    at.selectbox(key="demo_name").set_value(model)
    timed_run(at)  # loads the model and fills the caches for this image
    rng = random.Random(seed)
    warm, cold = [], []
    for _ in range(clicks):
        at.session_state["query_row"], at.session_state["query_col"] = rng.randrange(7), rng.randrange(7)
        warm.append(timed_run(at))
    for _ in range(max(2, clicks // 4)):
        at.session_state["query_row"], at.session_state["query_col"] = rng.randrange(7), rng.randrange(7)
        st.cache_data.clear()
        st.cache_resource.clear()
        cold.append(timed_run(at))
    return {
        "redraw_median_ms": 1000 * statistics.median(warm),
        "redraw_worst_ms": 1000 * max(warm),
        "uncached_median_ms": 1000 * statistics.median(cold),
        "ratio_uncached_to_redraw": statistics.median(cold) / statistics.median(warm),
    }


def first_page() -> dict[str, float]:
    """Seconds from ``streamlit run`` to the explorer drawn in Chromium."""
    from playwright.sync_api import sync_playwright

    from tests.support.server import CHROMIUM, CHROMIUM_ARGS, SETTLED, running_app

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        start = time.perf_counter()
        with running_app() as url:
            served = time.perf_counter()
            page.goto(url)
            page.get_by_text("Attention rollout").first.wait_for(timeout=120_000)
            page.wait_for_function(SETTLED, timeout=120_000)
            drawn = time.perf_counter()
        browser.close()
    return {"server_up_s": served - start, "first_page_drawn_s": drawn - start}


IMAGES_224 = 2  # new photos per page: each page's time is their median
PAGES_224 = ("views/explorer.py", "views/stages.py", "views/compare.py", "views/kernels.py", "views/model.py")


def pages_at_224(images: int = IMAGES_224) -> dict[str, float]:
    """Server seconds of each page's first visit for a new image, and of a query click, for timm's
    coatnet_0_rw_224 architecture at 224 loaded from a local checkpoint file (the model already cached;
    the on-request methods, Integrated Gradients and occlusion, are not asked for)."""
    import tempfile

    import torch

    import coatnet

    folder = Path(tempfile.mkdtemp(prefix="app-speed-"))
    torch.manual_seed(0)
    path = coatnet.save_checkpoint(coatnet.create_model("coatnet_0_rw_224").eval(), folder / "c0.safetensors")
    watch_first_figure()
    at = AppTest.from_file(MAIN, default_timeout=600)
    at.run()
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path))
    timed_run(at)  # loads the model, analyses the first photo
    samples = at.selectbox(key="gallery_photos").options
    out: dict[str, float] = {}
    for page in PAGES_224:
        at.switch_page(page)
        timed_run(at)  # this page on the image already seen (other pages filled the shared caches)
        times, firsts = [], []
        for index in range(1, 1 + images):
            at.selectbox(key="gallery_photos").set_value(at.selectbox(key="gallery_photos").options[index])
            times.append(timed_run(at))
            firsts.append(first_figure_s())
        at.selectbox(key="gallery_photos").set_value(samples[0])
        timed_run(at)
        out[f"{Path(page).stem}_new_image_s"] = statistics.median(times)
        if None not in firsts:  # (the Model page draws no figure)
            out[f"{Path(page).stem}_first_figure_s"] = statistics.median(firsts)
    at.switch_page("views/explorer.py")
    timed_run(at)
    clicks = []
    rng = random.Random(0)
    for _ in range(8):
        at.session_state["query_row"], at.session_state["query_col"] = rng.randrange(14), rng.randrange(14)
        clicks.append(timed_run(at))
    out["query_click_s"] = statistics.median(clicks)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["demo-pre", "demo-post"])
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--at-224", action="store_true", help="only the pages at 224 (coatnet_0_rw_224)")
    results_file.add_out_argument(parser, "app_server_speed{at}")
    args = parser.parse_args()
    if args.at_224:
        timings = pages_at_224()
        print(json.dumps(timings, indent=1))
        for name, seconds in timings.items():
            print(f"{name:28s} {seconds:6.2f} s")
        results_file.write(results_file.out_path(args, at="_224"), timings, rounds=IMAGES_224)
        return
    results: dict[str, dict[str, float]] = {m: redraws(m, args.clicks, args.seed) for m in args.models}
    if not args.no_browser:
        results["first_page"] = first_page()
    print(json.dumps(results, indent=1))
    results_file.write(results_file.out_path(args, at=""), results, rounds=args.clicks)
    for model in args.models:
        r = results[model]
        print(
            f"{model:10s} query redraw {r['redraw_median_ms']:6.0f} ms median, "
            f"{r['redraw_worst_ms']:6.0f} ms worst; uncached {r['uncached_median_ms']:6.0f} ms "
            f"({r['ratio_uncached_to_redraw']:.1f}x)"
        )
    if "first_page" in results:
        r = results["first_page"]
        print(
            f"first page drawn {r['first_page_drawn_s']:.1f} s after `streamlit run` "
            f"(server up {r['server_up_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
