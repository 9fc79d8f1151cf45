// The second browser: Debian's Firefox ESR driven by puppeteer-core over
// WebDriver BiDi (playwright cannot drive a stock Firefox). Elements are
// found by role and accessible name, as the Chromium scenarios find them,
// through puppeteer's ARIA selectors (`::-p-aria(name[role="…"])`), and form
// controls by their label.

import { existsSync } from "node:fs";

import { Guard, assert } from "./harness.mjs";

/** Debian's firefox-esr package puts the browser here. */
export const FIREFOX = "/usr/bin/firefox-esr";

const SETUP_HINT = "run tests/run.sh (it installs Firefox ESR with apt and puppeteer-core with npm ci in tests/browser)";

/** The browser automation library; missing is a failure that says how to install it. */
async function puppeteer() {
  try {
    return (await import("puppeteer-core")).default;
  } catch (error) {
    throw new Error(`puppeteer-core is not installed in tests/browser/node_modules: ${SETUP_HINT} (${error.message})`);
  }
}

/**
 * Starts headless Firefox (a fresh profile, UTC) with a 1280×800 page that
 * the guard watches: Firefox reports a CSP violation as a script error,
 * which the guard's "pageerror" hears. Answers `{browser, page, guard, close}`.
 */
export async function launchFirefox(origin) {
  assert.ok(existsSync(FIREFOX), `${FIREFOX} is missing: ${SETUP_HINT}`);
  const browser = await (await puppeteer()).launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    env: { ...process.env, TZ: "UTC" },
  });
  const page = (await browser.pages())[0] ?? (await browser.newPage());
  await page.setViewport({ width: 1280, height: 800 });
  // Generous: the suite runs these beside other tests on two cores.
  page.setDefaultTimeout(30_000);
  const guard = new Guard(origin);
  guard.watch(page);
  return { browser, page, guard, close: () => browser.close() };
}

/** The selector of the element with `role` and accessible name `name`. */
export function aria(role, name) {
  return `::-p-aria(${name}[role="${role}"])`;
}

/**
 * The form control labelled `name`, as a locator (to fill). A query by
 * accessible name finds the <label> too (Firefox names it by its text), and
 * a password input only through its label: take the label's control.
 */
export async function labelled(page, name) {
  const selector = `::-p-aria(${name})`;
  await page.waitForSelector(selector);
  for (const handle of await page.$$(selector)) {
    const control = await handle.evaluateHandle((element) =>
      element instanceof HTMLLabelElement ? element.control : element.closest("input, select, textarea"),
    );
    const element = control.asElement();
    if (element) return element.asLocator();
  }
  assert.fail(`no form control is labelled "${name}"`);
}

/** The texts of a page's elements matching `selector`, trimmed. */
export async function texts(scope, selector) {
  const handles = await scope.$$(selector);
  return Promise.all(handles.map((handle) => handle.evaluate((element) => element.innerText.trim())));
}

/**
 * Reads the usage explorer's "Totals by meter" table, found by its
 * accessible name: the cells of each body row (Meter | Unit | Quantity).
 */
export async function firefoxTotalsTable(page) {
  const table = await page.waitForSelector(aria("table", "Totals by meter"));
  return table.$$eval("tbody tr", (rows) =>
    rows.map((row) => [...row.querySelectorAll("th, td")].map((cell) => cell.innerText.trim())),
  );
}
