"""Screenshots of each view of nwp-serve's page, with headless Chromium (Selenium and
Debian's chromedriver, as tests/serving/test_web_browser.py).

    nwp-serve --rest_api_port=8501 --port=0 --model_name=ptb --model_base_path=saved_models/ptb &
    python scripts/web_screenshots.py --url http://127.0.0.1:8501 --model ptb --out docs \\
        --prompt "the company said" --score "the company said it expects profits to rise"

The attention view is drawn for a model with an ``attention`` signature (e.g. the
``lstm-attention`` preset or the Transformer); for others it shows why it is unavailable.

writes ``web_type.png``, ``web_generate.png``, ``web_surprisal.png``, ``web_attention.png``
and ``web_phone.png`` (the whole page at a phone's width) into ``--out``.
"""

import argparse
import pathlib
import shutil
import sys
import time


def wait(driver, script, *args, timeout=60):
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script, *args):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for: {script}")
        time.sleep(0.05)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="nwp-serve's REST address")
    p.add_argument("--model", default="", help="the model to pick (?model=NAME)")
    p.add_argument("--out", default="docs")
    p.add_argument("--prompt", default="the company said")
    p.add_argument("--generate", default="the company said")
    p.add_argument("--score", default="the company said it expects profits to rise")
    p.add_argument("--attention", default="the name of the module is the name of the",
                   help="prompt for the attention view (used if the model has the signature)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=900,1400", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(args.url.rstrip("/") + "/" + (f"?model={args.model}" if args.model else ""))
        wait(driver, "return document.body.dataset.ready")
        driver.find_element("id", "prompt").send_keys(args.prompt + " ")
        wait(driver, "return document.getElementById('suggestions').dataset.text === arguments[0]",
             args.prompt + " ")
        driver.find_element("id", "type-view").screenshot(str(out / "web_type.png"))
        box = driver.find_element("id", "gen-text")
        box.clear()
        box.send_keys(args.generate)
        seed = driver.find_element("id", "gen-seed")
        seed.clear()
        seed.send_keys(str(args.seed))
        driver.find_element("id", "gen-run").click()
        wait(driver, "return document.getElementById('gen-output').dataset.continuation")
        driver.find_element("id", "generate-view").screenshot(str(out / "web_generate.png"))
        box = driver.find_element("id", "score-text")
        box.clear()
        box.send_keys(args.score)
        driver.find_element("id", "score-run").click()
        wait(driver, "return document.getElementById('score-summary').dataset.perplexity")
        driver.find_element("id", "surprisal-view").screenshot(str(out / "web_surprisal.png"))
        if driver.find_element("id", "attention-run").is_enabled():
            box = driver.find_element("id", "attention-text")
            box.clear()
            box.send_keys(args.attention)
            driver.find_element("id", "attention-run").click()
            wait(driver, "return document.getElementById('attention-output').dataset.text "
                 "=== arguments[0]", args.attention)
        # The view is the last on the page: make the window tall enough to hold it whole (an
        # element screenshot is cut at the viewport's edge).
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(900, max(1400, height + 200))
        driver.find_element("id", "attention-view").screenshot(str(out / "web_attention.png"))
        driver.set_window_size(390, 800)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(390, min(height + 200, 5000))  # + the window's own chrome
        driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        driver.save_screenshot(str(out / "web_phone.png"))
    finally:
        driver.quit()
    print("wrote", ", ".join(f"{out}/web_{v}.png" for v in
                             ("type", "generate", "surprisal", "attention", "phone")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
