"""The page at ``/`` in a real browser: headless Chromium driven by Selenium through
Debian's ``chromedriver`` (``apt-get install chromium chromium-driver``; ``scripts/test.sh``
installs them when it runs as root). Skipped, with the reason, where either is missing.
(``scripts/web_screenshots.py`` drives the page the same way to make ``docs/web_*.png``.)
"""

import json
import math
import shutil
import time
import urllib.error
import urllib.request

import pytest


def _find(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("chromedriver")
try:
    import selenium  # noqa: F401
    MISSING = None
except ImportError:
    MISSING = "selenium is not installed (pip install -e '.[test]')"
if not MISSING and not (CHROMIUM and CHROMEDRIVER):
    MISSING = ("no headless browser: install Debian's chromium and chromium-driver "
               "(apt-get install chromium chromium-driver; scripts/test.sh does as root)")
# Decided before any fixture runs, so a machine without a browser trains no model for it.
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Selenium WebDriver) through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = CHROMIUM, CHROMEDRIVER
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,1300", "--hide-scrollbars", "--no-first-run",
                "--disable-extensions", "--lang=en-US"):
        options.add_argument(arg)
    try:  # the given driver path: Selenium Manager never goes to the network
        driver = webdriver.Chrome(service=Service(executable_path=driver_path),
                                  options=options)
    except Exception as err:  # noqa: BLE001  e.g. a driver that does not match the browser
        pytest.skip(f"Chromium did not start under {driver_path}: {err}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read())


def _wait(driver, condition, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition(driver)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture()
def page(browser, server):
    """The page, loaded and ready (model status and metadata read)."""
    browser.set_window_size(1000, 1300)
    browser.get(server + "/")
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"),
          what="the page to load the model's status")
    return browser


def _suggestions_for(driver, text):
    """The (words, probabilities) on screen once they are the answer for ``text``."""
    _wait(driver, lambda d: d.execute_script(
        "return document.getElementById('suggestions').dataset.text === arguments[0]", text),
        what=f"suggestions for {text!r}")
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#suggestions .suggestion'))"
        ".map(b => [b.dataset.word, Number(b.dataset.probability)])")
    return [w for w, _ in rows], [p for _, p in rows]


def _set(driver, element_id, value):
    box = driver.find_element("id", element_id)
    box.clear()
    box.send_keys(str(value))
    return box


def test_page_suggestions_equal_rest_predict(page, server):
    prompt = page.find_element("id", "prompt")
    prompt.send_keys("the name of")
    words, probs = _suggestions_for(page, "the name of")
    answer = _post(f"{server}/v1/models/nwp:predict", {"instances": ["the name of"]})
    expected = answer["predictions"][0]
    assert words == expected["words"]
    assert probs == expected["probabilities"]  # the JSON floats, unchanged
    bars = page.execute_script(
        "return Array.from(document.querySelectorAll('#suggestions .fill'))"
        ".map(f => parseFloat(f.style.width))")
    assert bars == pytest.approx([round(100 * p, 1) for p in probs], abs=0.051)
    # The model and version pickers come from the server (model list, GET status).
    models = page.execute_script(
        "return Array.from(document.getElementById('model').options).map(o => o.value)")
    versions = page.execute_script(
        "return Array.from(document.getElementById('version').options).map(o => o.value)")
    assert models == ["nwp"] and versions == ["", "1"]


def test_page_takes_suggestions_with_keys(page):
    from selenium.webdriver.common.keys import Keys

    prompt = page.find_element("id", "prompt")
    prompt.send_keys("the ")
    words, _ = _suggestions_for(page, "the ")
    prompt.send_keys("2")  # between words: key 2 takes the second suggestion
    after_two = f"the {words[1]} "
    assert prompt.get_attribute("value") == after_two
    words, _ = _suggestions_for(page, after_two)
    prompt.send_keys(Keys.TAB)  # Tab takes the first, and focus stays in the prompt
    after_tab = f"{after_two}{words[0]} "
    assert prompt.get_attribute("value") == after_tab
    assert page.switch_to.active_element == prompt
    _suggestions_for(page, after_tab)
    prompt.send_keys("x1")  # inside a word a digit is a digit
    assert prompt.get_attribute("value") == after_tab + "x1"
    _suggestions_for(page, after_tab + "x1")
    page.find_elements("css selector", "#suggestions .suggestion")[2].click()
    assert prompt.get_attribute("value").startswith(after_tab + "x1 ")
    # Keyboard only: Escape hides the strip, then Tab leaves the prompt.
    _suggestions_for(page, prompt.get_attribute("value"))
    prompt.send_keys(Keys.ESCAPE)
    prompt.send_keys(Keys.TAB)
    assert page.switch_to.active_element != prompt


def test_page_never_shows_a_stale_answer(page):
    # Hold back the answer for "slow" so that it arrives after the answer for "slow x".
    page.execute_script("""
        const fetchNow = window.fetch;
        window.fetch = (url, options) => {
          const answer = fetchNow(url, options);
          if (options && options.body && options.body.includes('"instances":["slow"]'))
            return answer.then(r => new Promise(done => setTimeout(() => done(r), 1500)));
          return answer;
        };""")
    prompt = page.find_element("id", "prompt")
    prompt.send_keys("slow")
    time.sleep(0.5)  # past the debounce: the request for "slow" is out
    prompt.send_keys(" x")
    _suggestions_for(page, "slow x")
    time.sleep(2.0)  # the answer for "slow" has come back by now
    assert page.execute_script(
        "return document.getElementById('suggestions').dataset.text") == "slow x"


def test_page_generate_equals_rest_generate(page, server):
    params = {"text": "the name of", "max_new_tokens": 12, "temperature": 0.9, "top_k": 30,
              "top_p": 0.9, "seed": 7}
    _set(page, "gen-text", params["text"])
    for element_id, key in (("gen-length", "max_new_tokens"), ("gen-temperature", "temperature"),
                            ("gen-top-k", "top_k"), ("gen-top-p", "top_p"),
                            ("gen-seed", "seed")):
        _set(page, element_id, params[key])
    page.find_element("id", "gen-run").click()
    output = page.find_element("id", "gen-output")
    _wait(page, lambda d: output.get_attribute("data-continuation") is not None,
          what="the generated text")
    answer = _post(f"{server}/v1/models/nwp:predict",
                   {"signature_name": "generate", "instances": [params]})["predictions"][0]
    assert output.get_attribute("data-continuation") == answer["continuation"]
    assert int(output.get_attribute("data-num-tokens")) == answer["num_tokens"]
    assert answer["continuation"] in output.text


def test_page_shows_the_api_error_message(page, server):
    _set(page, "gen-top-k", 99999999999)  # over int32: the API refuses it
    page.find_element("id", "gen-run").click()
    box = page.find_element("id", "error")
    _wait(page, lambda d: box.is_displayed(), what="the error")
    answer = _post(f"{server}/v1/models/nwp:predict", {"signature_name": "generate", "instances": [
        {"text": "the", "max_new_tokens": 20, "temperature": 0.8, "top_k": 99999999999,
         "top_p": 0.95, "seed": 1}]})
    assert answer["error"]
    assert box.get_attribute("data-message") == answer["error"]
    assert answer["error"] in box.text


def test_page_surprisal_equals_score(page, server):
    text = "The name of the module, is it the file?"
    _set(page, "score-text", text)
    page.find_element("id", "score-run").click()
    _wait(page, lambda d: d.find_elements("css selector", "#score-output .tok"),
          what="the scored tokens")
    answer = _post(f"{server}/v1/models/nwp:predict",
                   {"signature_name": "score", "instances": [text]})["predictions"][0]
    n = answer["num_tokens"]
    tokens = page.execute_script(
        "return Array.from(document.querySelectorAll('#score-output .tok'))"
        ".map(t => [t.textContent, Number(t.dataset.surprisal), t.title])")
    assert [s for _, s, _ in tokens] == [-lp for lp in answer["token_log_probs"][:n]]
    # The default corpus lower-cases and cuts punctuation out: those are the tokens shown.
    assert [t for t, _, _ in tokens] == ["the", "name", "of", "the", "module", ",", "is", "it",
                                         "the", "file", "?"]
    for word, value, title in tokens:  # the value on hover
        assert title.startswith(f"{word}: {value:.3f} nats")
    summary = page.find_element("id", "score-summary")
    assert float(summary.get_attribute("data-perplexity")) == answer["perplexity"]
    assert f"Perplexity {answer['perplexity']:.3f}" in summary.text
    mean = -sum(answer["token_log_probs"][:n]) / n
    assert math.exp(mean) == pytest.approx(answer["perplexity"], rel=1e-4)


def test_page_surprisal_says_the_model_reads_only_the_last_tokens(page, server):
    """More tokens than the export's max_prompt_tokens (256) is no error: the model reads the
    last ones, the page shades those it scores and says so."""
    text = "the name of the module " * 60  # 300 tokens, 1,380 bytes: within every limit
    _set(page, "score-text", text)
    page.find_element("id", "score-run").click()
    summary = page.find_element("id", "score-summary")
    _wait(page, lambda d: summary.get_attribute("data-perplexity"), what="the score")
    answer = _post(f"{server}/v1/models/nwp:predict",
                   {"signature_name": "score", "instances": [text]})["predictions"][0]
    n = answer["num_tokens"]
    assert n == 255  # after <eos>, the last 255 of the 256 tokens the model reads
    assert (f"the text has 300 tokens; the model scores only its last {n} "
            "(it reads at most max_prompt_tokens)") in summary.text
    assert len(page.find_elements("css selector", "#score-output .tok")) == n
    assert not page.find_element("id", "score-cut").is_displayed()  # nothing cut by the page


def test_page_says_attention_is_unavailable_without_the_signature(page, server):
    """The tiny LSTM has no attention layer, so its export has no ``attention`` signature:
    the view says so (and why) instead of asking."""
    with urllib.request.urlopen(f"{server}/v1/models/nwp/metadata", timeout=30) as response:
        defs = json.loads(response.read())["metadata"]["signature_def"]["signature_def"]
    assert "attention" not in defs
    note = page.find_element("id", "attention-note")
    assert note.get_attribute("data-available") == "false"
    assert "unavailable for this model" in note.text
    assert "no attention signature" in note.text and "no attention layer" in note.text
    assert not page.find_element("id", "attention-run").is_enabled()
    assert not page.find_elements("css selector", "#attention-output td")


@pytest.fixture(scope="module")
def attention_server(tmp_path_factory):
    """REST URL of nwp-serve on a tiny untrained Transformer (2 layers x 2 heads), exported
    with its ``attention`` signature as model ``att``."""
    from serving.export import export_saved_model
    from tests.conftest import running_server
    from tests.serving.test_attention_signature import _predictor

    base = tmp_path_factory.mktemp("attention_web")
    export_saved_model(_predictor("transformer"), str(base), "att")
    with running_server("--model_name=att", f"--model_base_path={base / 'att'}",
                        model="att") as (url, _):
        yield url


def test_page_attention_heat_map_equals_rest(browser, attention_server):
    browser.set_window_size(1000, 1300)
    browser.get(attention_server + "/")
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"),
          what="the page")
    note = browser.find_element("id", "attention-note")
    assert note.get_attribute("data-available") == "true"
    text = "The name of the zebra is the"
    _set(browser, "attention-text", text)
    browser.find_element("id", "attention-run").click()
    _wait(browser, lambda d: d.execute_script(
        "return document.getElementById('attention-output').dataset.text === arguments[0]",
        text), what="the heat map")
    answer = _post(f"{attention_server}/v1/models/att:predict",
                   {"signature_name": "attention", "instances": [text]})["predictions"][0]
    n = answer["num_tokens"]
    assert answer["tokens"][:n] == ["<eos>", "the", "name", "of", "the", "[UNK]", "is", "the"]
    header = browser.execute_script(
        "return Array.from(document.querySelectorAll('#attention-output th.token'))"
        ".map(t => t.textContent)")
    assert header == answer["tokens"][:n]
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#attention-output tbody tr')).map(r => "
        "Array.from(r.querySelectorAll('td')).map(c => [Number(c.dataset.layer), "
        "Number(c.dataset.head), Number(c.dataset.weight), c.title]))")
    expected = [(layer, head, weights) for layer, heads in enumerate(answer["weights"])
                for head, weights in enumerate(heads)]
    assert len(cells) == len(expected) == 4  # one row per layer and head
    for row, (layer, head, weights) in zip(cells, expected):
        assert [(c[0], c[1]) for c in row] == [(layer, head)] * n
        assert [c[2] for c in row] == weights[:n]  # the JSON floats, unchanged
        assert weights[n:] == [0.0] * (len(weights) - n)
        assert sum(weights[:n]) == pytest.approx(1.0, abs=1e-5)
        for token, (_, _, value, title) in zip(answer["tokens"], row):  # the value on hover
            assert title.startswith(f"{token}: {value:.4f} (layer {layer + 1}, head {head + 1})")
    browser.set_window_size(390, 844)  # on a phone the map scrolls inside its box
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")


def test_page_fits_a_phone(page):
    page.set_window_size(390, 844)  # a phone's CSS width
    page.find_element("id", "prompt").send_keys("the ")
    _suggestions_for(page, "the ")
    assert page.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")


def test_page_picks_among_several_models_and_versions(browser, exported, tmp_path):
    """With --model_config_file: every model is in the picker, the versions are the status's,
    and the requests go to the model and version picked."""
    from tests.conftest import running_server

    for version in ("1", "2"):
        shutil.copytree(exported[1], tmp_path / "two" / version)
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
      config {{ name: 'nwp' base_path: '{exported[0]}' model_platform: 'tensorflow' }}
      config {{ name: 'two' base_path: '{tmp_path / "two"}' model_platform: 'tensorflow'
               model_version_policy {{ all {{}} }} }} }}""")
    with running_server(f"--model_config_file={config}", model="two") as (url, _):
        browser.set_window_size(1000, 1300)
        browser.get(url + "/?model=two")
        _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"),
              what="the page")
        options = browser.execute_script(
            "return [document.getElementById('model').value, "
            "Array.from(document.getElementById('model').options).map(o => o.value), "
            "Array.from(document.getElementById('version').options).map(o => o.value)]")
        assert options == ["two", ["nwp", "two"], ["", "2", "1"]]
        browser.execute_script("""
            window.asked = [];
            const fetchNow = window.fetch;
            window.fetch = (url, options) => { window.asked.push(url); return fetchNow(url, options); };""")
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "version")).select_by_value("1")
        browser.find_element("id", "prompt").send_keys("the ")
        _suggestions_for(browser, "the ")
        asked = browser.execute_script("return window.asked")
        assert "/v1/models/two/versions/1/metadata" in asked
        assert asked[-1] == "/v1/models/two/versions/1:predict"
        Select(browser.find_element("id", "model")).select_by_value("nwp")
        _wait(browser, lambda d: d.execute_script(
            "return window.asked[window.asked.length - 1] === '/v1/models/nwp:predict'"),
            what="a request to the other model")
        assert browser.execute_script(
            "return Array.from(document.getElementById('version').options)"
            ".map(o => o.value)") == ["", "1"]


def test_page_with_batching_and_after_a_hot_reload(browser, exported, tmp_path):
    """With --enable_batching the suggestions equal REST :predict; after version 2 is
    renamed into place the server loads it, the page's version picker offers it (the page's
    own status refresh, as its timer runs it) and the suggestions still equal REST's."""
    import os

    from selenium.webdriver.support.ui import Select

    from tests.conftest import running_server

    base = tmp_path / "nwp"
    shutil.copytree(exported[1], base / "1")  # a base path of our own: `exported` is shared
    with running_server("--model_name=nwp", f"--model_base_path={base}", "--enable_batching",
                        "--file_system_poll_wait_seconds=0.2") as (url, _):
        browser.set_window_size(1000, 1300)
        browser.get(url + "/")
        _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"),
              what="the page")
        prompt = browser.find_element("id", "prompt")
        prompt.send_keys("the name of")
        words, probs = _suggestions_for(browser, "the name of")
        expected = _post(f"{url}/v1/models/nwp:predict",
                         {"instances": ["the name of"]})["predictions"][0]
        assert (words, probs) == (expected["words"], expected["probabilities"])

        shutil.copytree(exported[1], tmp_path / ".copy-of-2")  # copy aside, then rename in
        os.rename(tmp_path / ".copy-of-2", base / "2")

        def status(_):
            with urllib.request.urlopen(f"{url}/v1/models/nwp", timeout=10) as response:
                states = {s["version"]: s["state"]
                          for s in json.loads(response.read())["model_version_status"]}
            return states.get("2") == "AVAILABLE" and states
        states = _wait(browser, status, timeout=60, what="version 2 AVAILABLE")
        assert states["1"] == "END"  # the latest policy unloads the old one after
        browser.execute_script("return loadStatus()")  # what the page's 15 s timer calls
        assert browser.execute_script(
            "return Array.from(document.getElementById('version').options)"
            ".map(o => o.value)") == ["", "2"]
        assert "v2 AVAILABLE" in browser.find_element("id", "model-status").text
        prompt.send_keys(" the")  # latest, now version 2
        words, probs = _suggestions_for(browser, "the name of the")
        latest = _post(f"{url}/v1/models/nwp:predict",
                       {"instances": ["the name of the"]})["predictions"][0]
        two = _post(f"{url}/v1/models/nwp/versions/2:predict",
                    {"instances": ["the name of the"]})["predictions"][0]
        assert latest == two
        assert (words, probs) == (two["words"], two["probabilities"])
        browser.execute_script(
            "window.asked = []; const f = window.fetch; "
            "window.fetch = (u, o) => { window.asked.push(u); return f(u, o); };")
        seq = int(browser.find_element("id", "suggestions").get_attribute("data-seq"))
        Select(browser.find_element("id", "version")).select_by_value("2")
        _wait(browser, lambda d: int(d.find_element("id", "suggestions")
                                     .get_attribute("data-seq")) > seq,
              what="the answer from version 2")
        assert browser.execute_script("return window.asked")[-1] == \
            "/v1/models/nwp/versions/2:predict"
        words, probs = _suggestions_for(browser, "the name of the")
        assert (words, probs) == (two["words"], two["probabilities"])


def _type_in(driver, element_id, text):
    """Put ``text`` in a box as if typed (the input event fires), fast for long texts."""
    driver.execute_script("const box = document.getElementById(arguments[0]);"
                          "box.value = arguments[1];"
                          "box.dispatchEvent(new Event('input', {bubbles: true}));",
                          element_id, text)


def _post_status(url, body):
    """``(status, answer)``; the body as the page sends it (UTF-8, no spaces)."""
    body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_page_cuts_a_text_too_long_for_the_server(browser, exported):
    """A text over --max_request_bytes (or whose tokens with max_new_tokens are over
    --max_request_tokens) is cut to its end before it is sent, with a note saying so: the
    page sends nothing the API refuses, and its answers are REST's for the text sent."""
    from tests.conftest import running_server

    with running_server("--model_name=nwp", f"--model_base_path={exported[0]}",
                        "--max_request_bytes=3000", "--max_request_tokens=300") as (url, _):
        predict = f"{url}/v1/models/nwp:predict"
        browser.set_window_size(1000, 1300)
        browser.get(url + "/")
        _wait(browser, lambda d: d.execute_script("return document.body.dataset.ready"),
              what="the page")
        browser.execute_script("""
            window.sent = [];
            const fetchNow = window.fetch;
            window.fetch = async (url, options) => {
              const answer = await fetchNow(url, options);
              if (options && options.body) window.sent.push(
                [new TextEncoder().encode(options.body).length, answer.status]);
              return answer;
            };""")
        long_text = "the naïve name of the module is the file, " * 120  # 5,160 bytes
        assert _post_status(predict, {"instances": [long_text]})[0] == 413

        _type_in(browser, "prompt", long_text)
        words, probs = _suggestions_for(browser, long_text)
        note = browser.find_element("id", "type-cut")
        sent = note.get_attribute("data-sent")
        assert note.is_displayed() and "--max_request_bytes" in note.text
        assert f"its last {len(sent)} of {len(long_text)} characters" in note.text
        assert long_text.endswith(sent) and 2900 < len(json.dumps(
            {"signature_name": "serving_default", "instances": [sent]},
            ensure_ascii=False, separators=(",", ":")).encode()) <= 3000  # the longest that fits
        expected = _post_status(predict, {"instances": [sent]})[1]["predictions"][0]
        assert (words, probs) == (expected["words"], expected["probabilities"])
        _type_in(browser, "prompt", "the name of")  # short again: the note goes
        _suggestions_for(browser, "the name of")
        assert not note.is_displayed()

        # Generate: 600 bytes of prompt count 256 tokens, and 100 new ones are over 300.
        params = {"text": "the name of the module is the file " * 17 + "and", "max_new_tokens":
                  100, "temperature": 0.9, "top_k": 30, "top_p": 0.9, "seed": 7}
        assert _post_status(predict, {"signature_name": "generate", "instances": [params]}) \
            [0] == 400
        _type_in(browser, "gen-text", params["text"])
        for element_id, key in (("gen-length", "max_new_tokens"), ("gen-temperature",
                                "temperature"), ("gen-top-k", "top_k"), ("gen-top-p", "top_p"),
                                ("gen-seed", "seed")):
            _set(browser, element_id, params[key])
        browser.find_element("id", "gen-run").click()
        output = browser.find_element("id", "gen-output")
        _wait(browser, lambda d: output.get_attribute("data-continuation") is not None,
              what="the generated text")
        note = browser.find_element("id", "gen-cut")
        sent = note.get_attribute("data-sent")
        assert note.is_displayed() and "--max_request_tokens" in note.text
        assert params["text"].endswith(sent) and len(sent.encode()) == 300 - 100 - 1
        answer = _post_status(predict, {"signature_name": "generate", "instances": [
            {**params, "text": sent}]})[1]["predictions"][0]
        assert output.get_attribute("data-continuation") == answer["continuation"]

        # Surprisal of the long text: the tokens shown are the sent text's.
        _type_in(browser, "score-text", long_text)
        browser.find_element("id", "score-run").click()
        summary = browser.find_element("id", "score-summary")
        _wait(browser, lambda d: summary.get_attribute("data-perplexity"), what="the score")
        sent = browser.find_element("id", "score-cut").get_attribute("data-sent")
        assert long_text.endswith(sent)
        answer = _post_status(predict, {"signature_name": "score", "instances": [sent]})[1]
        assert float(summary.get_attribute("data-perplexity")) == \
            answer["predictions"][0]["perplexity"]
        # Everything the page sent was within the body limit and answered 200.
        assert all(size <= 3000 and status == 200
                   for size, status in browser.execute_script("return window.sent"))
        assert not browser.find_element("id", "error").is_displayed()
