"""Make docs/explore.png, the README's picture of `vaekit explore`, with the browser tests' tooling.

    python docs/screenshot.py --run RUN        # or, without --run, train a 2-D MNIST VAE first (~1 min):
    python docs/screenshot.py --data-dir ../shared/data/mnist

Serves the run on a free port, opens it in Debian's Chromium through Playwright, clicks a point of the
scatter and takes the top of the page; the PNG is reduced to 128 colours to stay small.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "explore.png")
    args = parser.parse_args()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    import vaekit
    from test_explore_browser import ARGS, CHROMIUM, Page
    from vaekit.explore import running

    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="explore-shot-")) / "mnist-2d"
        vaekit.train("keras-blog", dataset="mnist", data_dir=args.data_dir, epochs=15, run_dir=run, progress=False)
    with running(run) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = Page(browser, url)
        tab.scatter_click(0.62, 0.3)
        png = tab.page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": 1020})
        assert tab.errors == [], tab.errors
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(128)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
