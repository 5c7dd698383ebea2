#!/usr/bin/env python3
"""The operator dashboard in a real headless browser (Chromium via Selenium), against `felhom demo`.

Signs in through the login form, opens every page, checks what a person would see (the fleet row,
status colours, drift, the signed-op history, hover times), saves a draft through the editor form
and publishes it, and signs out. With --screenshots DIR it saves one PNG per page (docs/screenshots).
Prints `N passed, N failed`.
Usage: dashboard_browser_test.py BIN_DIR [--screenshots DIR]
"""
import os, re, subprocess, sys, tempfile, time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from common import Checks

bin_dir = sys.argv[1]
shots = sys.argv[sys.argv.index("--screenshots") + 1] if "--screenshots" in sys.argv else None
work = tempfile.mkdtemp(prefix="felhom-dash-")
demo = subprocess.Popen([os.path.join(bin_dir, "felhom"), "demo", "--dir", work], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
url = None
deadline = time.time() + 120
while time.time() < deadline:
    line = demo.stdout.readline()
    if not line:
        break
    m = re.match(r"Dashboard: (\S+?)/?\s", line)
    if m:
        url = m.group(1)
        break
if not url:
    demo.kill()
    print("the demo did not print its dashboard URL")
    print("dashboard: 0 passed, 1 failed")
    sys.exit(1)
key = open(os.path.join(work, "operator-key.txt")).read().strip()

opts = Options()
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--disable-dev-shm-usage"]:
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
checks = Checks("dashboard")


def shot(name):
    if shots:
        os.makedirs(shots, exist_ok=True)
        browser.save_screenshot(os.path.join(shots, name + ".png"))


def text():
    for _ in range(50):  # a click may still be loading the next page
        try:
            return browser.find_element(By.TAG_NAME, "body").text
        except Exception:
            time.sleep(0.1)
    return ""


def wait_for(words):
    """Waits (bounded) until the page shows `words`; returns whether it did."""
    for _ in range(50):
        if words in text():
            return True
        time.sleep(0.1)
    return False


try:
    def login():
        browser.get(url + "/")
        assert browser.current_url.endswith("/login"), browser.current_url
        shot("login")
        browser.find_element(By.NAME, "key").send_keys("wrong-key")
        browser.find_element(By.CSS_SELECTOR, "button.primary").click()
        assert "not accepted" in text()
        browser.find_element(By.NAME, "key").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "button.primary").click()
        for _ in range(50):
            if browser.current_url.rstrip("/") == url:
                break
            time.sleep(0.1)
        assert browser.current_url.rstrip("/") == url, browser.current_url
        cookie = browser.get_cookie("felhom_session")
        assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie

    def fleet():
        browser.get(url + "/")
        t = text()
        assert "nappali" in t and "Kiss Anna" in t, t
        pill = browser.find_elements(By.CSS_SELECTOR, "td .pill")[0]
        assert pill.value_of_css_property("border-radius") not in ("", "0px"), "styles did not apply"
        assert browser.find_elements(By.CSS_SELECTOR, "span[title]"), "times carry the exact time on hover"
        shot("fleet")

    def host():
        browser.find_element(By.LINK_TEXT, "nappali").click()
        t = text()
        assert "Guests: desired vs actual" in t and "photos" in t and "in_sync" in t, t
        # The demo's last phase (the box lost and recovered) is among the recent events.
        assert "Recent events" in t and "dr_recovered" in t and "host_enrolled" in t, t
        shot("host")

    def desired_editor():
        browser.find_element(By.LINK_TEXT, "Edit desired state").click()
        editor_url = browser.current_url.split("?")[0]
        area = browser.find_element(By.NAME, "spec")
        spec = area.get_attribute("value")
        assert '"photos"' in spec, spec
        # The demo published some generations already (desired state, removal, storage policy).
        published = int(re.search(r"Published generation (\d+)", text()).group(1))
        shot("desired")
        area.clear()
        area.send_keys(spec.replace('"memory_mb" : 1024', '"memory_mb" : 0', 1))
        browser.find_elements(By.CSS_SELECTOR, "main form button")[0].click()  # Save draft (the header holds the sign-out forms)
        assert wait_for("memory must be positive"), text()
        browser.get(browser.current_url)
        area = browser.find_element(By.NAME, "spec")
        area.clear()
        area.send_keys(spec.replace('"memory_mb" : 1024', '"memory_mb" : 1536', 1))
        browser.find_elements(By.CSS_SELECTOR, "main form button")[0].click()
        assert wait_for("Draft saved") and "unpublished changes" in text(), text()
        browser.find_element(By.CSS_SELECTOR, "button.primary").click()
        assert wait_for(f"Published generation {published + 1}"), text()
        # An edit not saved first is published, not discarded; a bad one publishes nothing.
        area = browser.find_element(By.NAME, "spec")
        area.clear()
        area.send_keys(spec.replace('"memory_mb" : 1024', '"memory_mb" : -1', 1))
        browser.find_element(By.CSS_SELECTOR, "button.primary").click()
        assert wait_for("nothing was published"), text()
        browser.get(editor_url)
        area = browser.find_element(By.NAME, "spec")
        area.clear()
        area.send_keys(spec.replace('"memory_mb" : 1024', '"memory_mb" : 2048', 1))
        browser.find_element(By.CSS_SELECTOR, "button.primary").click()
        assert wait_for(f"Published generation {published + 2}"), text()
        assert '"memory_mb" : 2048' in browser.find_element(By.NAME, "spec").get_attribute("value")

    def events():
        browser.get(url + "/events")
        assert "desired_published" in text()
        browser.find_element(By.NAME, "type").send_keys("op_applied")
        browser.find_elements(By.CSS_SELECTOR, "main form button")[0].click()
        t = text()
        assert "op_applied" in t and "desired_published" not in t, t
        browser.get(url + "/events")
        shot("events")

    def signed_ops():
        browser.get(url + "/signed-ops")
        t = text()
        assert "applied" in t and "rejected" in t and "replay" in t, t
        shot("signed-ops")

    def customers():
        browser.get(url + "/customers")
        assert "kiss.example.hu" in text()
        shot("customers")

    def logout():
        browser.find_element(By.XPATH, "//header//button").click()
        browser.get(url + "/")
        assert browser.current_url.endswith("/login")

    for title, fn in [("sign in through the form", login), ("fleet overview", fleet), ("host detail with drift", host),
                      ("desired-state editor: bad input named, save, publish", desired_editor), ("events with filters", events),
                      ("signed-op queue", signed_ops), ("customers", customers), ("sign out", logout)]:
        checks.check(title, fn)
finally:
    browser.quit()
    demo.terminate()
    try:
        demo.wait(timeout=30)
    except subprocess.TimeoutExpired:
        demo.kill()
sys.exit(checks.finish())
