"""Regenerate the README's screenshots from the running app (``make screenshots``).

Serves the app (``python -m app.serve``, as ``make app`` does) on a free loopback port (offline), drives
Debian's Chromium with Playwright through each page on the built-in demo checkpoints, and writes
``docs/screenshots/*.png``.
Run it from the repository root with the project's virtual environment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from tests.support.server import CHROMIUM, CHROMIUM_ARGS, SETTLED, running_app  # noqa: E402

# (file, the link's query (model, block), page link in the sidebar, what to wait for, the text to scroll
# to the top of the shot or None)
SHOTS = (
    ("explorer.png", "", "Attention explorer", "Attention rollout", "Stage.block"),
    (
        "stages.png",
        "",
        "Stage inspector",
        "Which pixels the prediction rests on",
        "Grad-CAM (bottom row) explains the class",
    ),
    ("compare.png", "", "Pre vs post", "Relative-bias kernels of", "the two agree"),
    ("kernels.png", "", "Kernels", "MBConv depthwise kernels", None),
    ("model.png", "", "Model", "Model card", None),
    (
        "explorer-maxvit.png",
        "?model=demo-maxvit&block=S1.0.grid",
        "Attention explorer",
        "Attention rollout",
        "Stage.block",
    ),
)


def settle(page: Page, text: str) -> None:
    """Wait until ``text`` shows, the app stops running and every Plotly chart has drawn."""
    page.get_by_text(text, exact=False).first.wait_for(timeout=120_000)
    page.wait_for_function(SETTLED, timeout=120_000)
    page.wait_for_timeout(500)
    page.wait_for_function(SETTLED, timeout=120_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--only", nargs="+", metavar="FILE", help="only these shots (explorer.png ...)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with running_app() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        opened = None
        for name, query, link, text, top in SHOTS:
            if args.only and name not in args.only:
                continue
            if query != opened:  # another model: open the app on it
                page.goto(url + query)
                opened = query
            page.get_by_role("link", name=link).click()
            settle(page, text)
            if top is not None:  # the page's figures, not only its controls
                page.get_by_text(top, exact=False).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(300)
            page.screenshot(path=args.out / name, full_page=False)
            print(f"wrote {args.out / name}")
        browser.close()


if __name__ == "__main__":
    main()
