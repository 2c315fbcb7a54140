"""Issue #11 point 5: the alerts console in a real browser, inside a real Airflow UI. Headless
Chromium signs in through the simple auth manager's form, finds Browse -> Detections in the UI's
menu, and works in the iframe the UI shows the plugin in: filter, open an alert; then the
back-filled DAG run's Detections tab. What the pages must show comes from the demo's planted
ground truth (the rule's sample cases, planted by detection_tools/lakegen.py), not from the store
the pages read.

Screenshots (tests/ui/conftest.py SHOTS): console-list.png, console-filtered.png,
console-alert.png, console-run-tab.png."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.ui.conftest import SHOTS, TIMEOUT, WINDOW

pytestmark = pytest.mark.slow

USER = "frank.miller"  # tp_two_uncommon_signins: one Run Command, two uncommon sign-ins
FRAME = (By.CSS_SELECTOR, "iframe[title='Detections']")


def _wait(driver, timeout: float = TIMEOUT) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def _click(driver, locator, what: str) -> None:
    """Click once the element exists and takes the click (menus animate in)."""

    def clicked(d):
        try:
            d.find_element(*locator).click()
            return True
        except (
            NoSuchElementException,
            StaleElementReferenceException,
            ElementClickInterceptedException,
            ElementNotInteractableException,
        ):
            return False

    _wait(driver).until(clicked, f"could not click {what}")


def _into_console(driver, ready=(By.ID, "alerts")) -> None:
    _wait(driver).until(
        EC.frame_to_be_available_and_switch_to_it(FRAME), "the UI shows no Detections iframe"
    )
    _wait(driver).until(EC.presence_of_element_located(ready), f"no {ready[1]} in the console")


def _shoot(driver, name: str, whole_page: bool = False) -> None:
    """The whole Airflow page (the console inside it); `whole_page` grows the window to the
    console's height first, so a long alert page is in one picture."""
    if whole_page:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.switch_to.default_content()
        driver.set_window_size(WINDOW[0], min(height + 200, 4000))
        try:
            driver.save_screenshot(str(SHOTS / name))
        finally:
            driver.set_window_size(*WINDOW)
    else:
        driver.switch_to.default_content()
        driver.save_screenshot(str(SHOTS / name))
    driver.switch_to.frame(driver.find_element(*FRAME))


def _open_console(driver, console) -> None:
    """Home page, then the UI's own menu: Browse -> Detections."""
    driver.switch_to.default_content()
    driver.get(console.base + "/")
    _click(driver, (By.XPATH, "//*[normalize-space(text())='Browse']"), "Browse")
    _click(
        driver,
        (By.XPATH, "//*[@role='menuitem'][normalize-space(.)='Detections']"),
        "Browse -> Detections",
    )
    _into_console(driver)


def _rows(driver, table_id: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")


def _heading(driver) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def _filter_by_user(driver, user: str) -> None:
    table = driver.find_element(By.ID, "alerts")
    box = driver.find_element(By.NAME, "user")
    box.clear()
    box.send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    _wait(driver).until(EC.staleness_of(table), "the filter did not load a new page")
    _wait(driver).until(EC.presence_of_element_located((By.ID, "alerts")))


def _open_users_alert(driver, console, user: str) -> None:
    _open_console(driver, console)
    _filter_by_user(driver, user)
    _click(driver, (By.CSS_SELECTOR, "#alerts tbody td:last-child a"), f"{user}'s alert")
    _wait(driver).until(
        EC.presence_of_element_located((By.ID, "evidence")), "the alert page did not open"
    )


def _follow(driver, link, arrived, what: str) -> None:
    """Click `link`; wait until `arrived` or the browser says it blocked the navigation."""
    driver.get_log("browser")  # drop what earlier pages logged
    blocked: list[str] = []

    def outcome(d):
        blocked.extend(
            e["message"]
            for e in d.get_log("browser")
            if e["level"] == "SEVERE" and "sandboxed" in e["message"]
        )
        return arrived(d) or blocked

    _click(driver, link, what)
    _wait(driver).until(outcome, f"{what}: nothing happened")
    assert arrived(driver), f"{what} was blocked: {blocked}"


def test_an_analyst_finds_every_alert_of_the_backfill_under_browse_detections(console, analyst):
    _open_console(analyst, console)
    expected = console.expected_alerts()
    assert f"({len(expected)} matching)" in _heading(analyst)
    accounts = [
        r.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text.lower()
        for r in _rows(analyst, "alerts")
    ]
    assert sorted(accounts) == sorted(c["caller"].lower() for c in expected)
    _shoot(analyst, "console-list.png")


def test_filtering_by_a_user_shows_only_their_alerts_and_the_count(console, analyst):
    _open_console(analyst, console)
    expected = console.expected_alerts(USER)
    assert len(expected) < len(console.expected_alerts()), "the filter must have others to drop"
    _filter_by_user(analyst, USER)
    assert f"({len(expected)} matching)" in _heading(analyst)
    rows = _rows(analyst, "alerts")
    assert len(rows) == len(expected)
    assert all(USER in r.text for r in rows), [r.text for r in rows]
    assert analyst.find_element(By.NAME, "user").get_attribute("value") == USER, (
        "the filter stays in its box"
    )
    _shoot(analyst, "console-filtered.png")


def test_a_viewer_sees_the_alerts_evidence_ticket_and_run_but_no_redeliver(console, analyst):
    _open_users_alert(analyst, console, USER)
    (case,) = console.expected_alerts(USER)
    assert case["caller"] in _heading(analyst)
    assert len(_rows(analyst, "evidence")) == case["expected_rows"]
    tickets = _rows(analyst, "tickets")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in tickets] == ["file"]
    ticket_files = {p.name for p in console.tickets()}
    assert tickets[0].find_elements(By.CSS_SELECTOR, "td")[1].text in ticket_files
    runs = analyst.find_elements(By.CSS_SELECTOR, "#runs tbody a")
    assert [a.text for a in runs] == [console.run_id], "the back-fill run created it"
    assert runs[0].get_attribute("href") == console.run_url(), "and it links to the run's page"
    assert analyst.find_elements(By.ID, "redeliver") == [], "a viewer gets no Redeliver button"
    _shoot(analyst, "console-alert.png", whole_page=True)


def test_the_dag_runs_detections_tab_lists_its_alerts_and_data_quality(console, analyst):
    analyst.switch_to.default_content()
    analyst.get(console.run_url())
    _click(analyst, (By.XPATH, "//a[normalize-space(.)='Detections']"), "the run's Detections tab")
    _into_console(analyst, ready=(By.ID, "quality"))
    assert console.run_id in _heading(analyst) and "(success)" in _heading(analyst)
    accounts = sorted(
        r.find_elements(By.CSS_SELECTOR, "td")[1].text.lower() for r in _rows(analyst, "alerts")
    )
    assert accounts == sorted(c["caller"].lower() for c in console.expected_alerts())
    verdicts = {
        r.find_element(By.CSS_SELECTOR, "td").text: r.text for r in _rows(analyst, "quality")
    }
    assert set(verdicts) == {"AzureActivity", "BehaviorAnalytics"}
    assert all("passed" in v for v in verdicts.values()), verdicts
    _shoot(analyst, "console-run-tab.png")


def test_links_that_leave_the_console_work_inside_the_uis_iframe(console, analyst):
    _open_users_alert(analyst, console, USER)
    _follow(
        analyst,
        (By.CSS_SELECTOR, "#quality a"),
        lambda d: len(d.window_handles) == 2,
        "the Data Docs link (target=_blank)",
    )
    analyst.switch_to.window(analyst.window_handles[1])
    analyst.close()
    analyst.switch_to.window(analyst.window_handles[0])
    _into_console(analyst, ready=(By.ID, "runs"))
    _follow(
        analyst,
        (By.CSS_SELECTOR, "#runs tbody a"),
        lambda d: d.current_url.split("?")[0] == console.run_url(),
        "the link to the run behind the alert (target=_top)",
    )


def test_an_admin_redelivers_from_the_alert_page_and_the_ticket_is_updated_not_duplicated(
    console, admin
):
    tickets = console.tickets()
    _open_users_alert(admin, console, USER)
    logged = len(_rows(admin, "delivery-log"))
    _click(admin, (By.ID, "redeliver"), "Redeliver")
    _wait(admin).until(
        lambda d: d.find_element(By.ID, "redeliver-result").text not in ("", "delivering..."),
        "the redeliver request never answered",
    )
    assert admin.find_element(By.ID, "redeliver-result").text == "delivered again"
    page = admin.find_element(By.ID, "delivery-log")
    admin.execute_script("location.reload()")  # the iframe's page, not the UI around it
    _wait(admin).until(EC.staleness_of(page))
    _wait(admin).until(EC.presence_of_element_located((By.ID, "delivery-log")))
    assert len(_rows(admin, "delivery-log")) == logged + 1
    assert console.tickets() == tickets, "the file ticket is rewritten, no second one"
