"""Headless Chromium from Debian's packages driven by selenium with the system chromedriver (no
browser is downloaded), and the checks a person makes of a static site: no console error,
columns that sort, links that lead somewhere, figures that show."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMEDRIVER = "/usr/bin/chromedriver"


def start_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def console_errors(driver, page: Path) -> list[str]:
    driver.get(page.as_uri())
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def column_values(driver, table_id: str, column: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".map(r => r.cells[arguments[1]].getAttribute('data-v'));", table_id, column)


def sort_problems(driver, page: Path, table_id: str, header: str) -> list[str]:
    """Click `header` twice: its column must read ascending, then descending (empty last)."""
    from selenium.webdriver.common.by import By

    driver.get(page.as_uri())
    table = driver.find_element(By.ID, table_id)
    headers = [th.text.strip() for th in table.find_elements(By.TAG_NAME, "th")]
    column = next(i for i, h in enumerate(headers) if h.startswith(header))
    problems = []
    for direction in ("ascending", "descending"):
        table.find_elements(By.TAG_NAME, "th")[column].click()
        values = [float(v) for v in column_values(driver, table_id, column) if v]
        expected = sorted(values, reverse=direction == "descending")
        if values != expected:
            problems.append(f"{header} {direction}: {values}")
    return problems


def dead_links(driver, index: Path) -> list[str]:
    """Every page reachable from `index` by internal links, followed: the links whose target
    does not exist or does not load."""
    from selenium.webdriver.common.by import By

    seen, queue, dead = set(), [index.resolve()], []
    while queue:
        page = queue.pop()
        if page in seen:
            continue
        seen.add(page)
        driver.get(page.as_uri())
        for a in driver.find_elements(By.TAG_NAME, "a"):
            url = urlparse(a.get_attribute("href") or "")
            if url.scheme != "file":
                continue
            target = Path(unquote(url.path))
            if not target.is_file():
                dead.append(f"{page.name} -> {target}")
            elif target.suffix == ".html":
                queue.append(target)
    return dead


def image_problems(driver, page: Path) -> list[str]:
    """Images that did not load or take no room on the page."""
    driver.get(page.as_uri())
    return driver.execute_script(
        "document.querySelectorAll('section[hidden]').forEach(s => s.hidden = false);"
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0"
        " && i.getBoundingClientRect().width > 0 && i.getBoundingClientRect().height > 0))"
        ".map(i => i.getAttribute('src'));")
