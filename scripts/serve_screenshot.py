r"""The README's picture of the web page: serve a run, upload a sketch, paint one red stroke,
colourise, and save a screenshot (headless Chromium, as tests/infer/test_app.py drives it).

  python scripts/serve_screenshot.py RUN_DIR SKETCH docs/serve.png

Needs the app and test extras (gradio, selenium) and Debian's chromium + chromium-driver.
"""

import os
import shutil
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(run: str, sketch: str, out: str, port: int = 7871) -> None:
  env = dict(os.environ, XLA_FLAGS="", GRADIO_ANALYTICS_ENABLED="False")
  server = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-m", "mangacolor_jax.serve", "--workdir", run, "--port", str(port)],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}/"
  try:
    for _ in range(240):
      try:
        urllib.request.urlopen(url, timeout=2).close()
        break
      except OSError:
        time.sleep(0.5)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1000"):
      options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")),
                              options=options)
    wait = WebDriverWait(driver, 120)
    driver.get(url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
               ).send_keys(os.path.abspath(sketch))
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "x"))
    canvas = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#editor canvas")))
    time.sleep(1)
    brush = driver.find_element(By.CSS_SELECTOR, "#editor button[aria-label='Brush']")
    if "highlight" not in (brush.get_attribute("class") or ""):
      brush.click()
    half = canvas.size["width"] // 14
    (ActionChains(driver)
     .move_to_element_with_offset(canvas, -half, -canvas.size["height"] // 4).click_and_hold()
     .move_by_offset(half, 2).move_by_offset(half, -2).release().perform())
    time.sleep(0.5)
    driver.find_element(By.ID, "colorize").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result img"))
    time.sleep(2)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(out)
    driver.quit()
  finally:
    server.terminate()
    server.wait()


if __name__ == "__main__":
  main(*sys.argv[1:4])
