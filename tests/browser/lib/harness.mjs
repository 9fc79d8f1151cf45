// What every console scenario shares: the settings it is given by
// tests/console_browser.rs (environment variables), headless Chromium from
// Debian's package driven by playwright-core, guards that fail the scenario
// on a request to another origin, a CSP violation or a script error, steps
// that say which one failed, and the API read directly (Node's fetch, not
// the page) to know what the page must show.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian's chromium package puts the browser here. */
export const CHROMIUM = "/usr/bin/chromium";

/** The Azure usage API's version, as every request names it. */
export const API_VERSION = "api-version=2015-06-01-preview";

const SETUP_HINT = "run tests/run.sh (it installs Chromium with apt and playwright-core with npm ci in tests/browser)";

/** A setting from the environment; missing is a failure. */
export function setting(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: tests/console_browser.rs sets it`);
  return value;
}

/** A comma-separated setting as a list. */
export function list(name) {
  return setting(name)
    .split(",")
    .filter((item) => item !== "");
}

let currentStep = "start";

/** Runs one named step; a failure says which step it was. */
export async function step(name, body) {
  currentStep = name;
  const started = Date.now();
  try {
    const result = await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
    return result;
  } catch (error) {
    console.error(`FAIL ${name}`);
    throw error;
  }
}

/**
 * Runs a scenario: fails it (exit status 1, with the step and the error) on
 * any exception or after `seconds`.
 */
export function scenario(name, seconds, body) {
  const timer = setTimeout(() => {
    console.error(`FAIL ${name}: still running after ${seconds} s (in step "${currentStep}")`);
    process.exit(1);
  }, seconds * 1000);
  body().then(
    () => {
      clearTimeout(timer);
      console.log(`PASS ${name}`);
    },
    (error) => {
      console.error(`FAIL ${name} in step "${currentStep}":`);
      console.error(error?.stack ?? error);
      process.exit(1);
    },
  );
}

/** The browser automation library; missing is a failure that says how to install it. */
async function playwright() {
  try {
    return await import("playwright-core");
  } catch (error) {
    throw new Error(`playwright-core is not installed in tests/browser/node_modules: ${SETUP_HINT} (${error.message})`);
  }
}

/**
 * Starts headless Chromium on a fresh profile with a 1280×800 page. Answers
 * `{context, page, guard, close}`; `guard` records what the page must never
 * do (see `Guard`).
 */
export async function launch(origin) {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: ${SETUP_HINT}`);
  const { chromium } = await playwright();
  const profile = mkdtempSync(join(tmpdir(), "tally-console-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Without the background-networking flags Chromium calls Google's
    // services, which this closed network refuses.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
    locale: "en-GB",
    timezoneId: "UTC",
  });
  // Generous: the suite runs these beside other tests on two cores.
  context.setDefaultTimeout(30_000);
  const page = context.pages()[0] ?? (await context.newPage());
  const guard = new Guard(origin);
  guard.watch(page);
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, guard, close };
}

/**
 * Records every request the page makes, its responses' bodies, console
 * errors (a CSP violation is one) and uncaught exceptions.
 */
export class Guard {
  constructor(origin) {
    this.origin = origin;
    this.requests = [];
    this.foreign = [];
    this.problems = [];
    this.bodies = [];
    // Origins the page may navigate to (top level only), while allowed.
    this.navigationOrigins = new Set();
    this.navigations = [];
  }

  watch(page) {
    page.on("request", (request) => {
      const url = request.url();
      this.requests.push(`${request.method()} ${url}`);
      // data: URLs never leave the page (the CSP allows them for images only).
      if (url.startsWith("data:") || new URL(url).origin === this.origin) return;
      const navigation = request.isNavigationRequest() && request.frame() === page.mainFrame();
      if (navigation && this.navigationOrigins.has(new URL(url).origin)) {
        this.navigations.push(`${request.method()} ${url}`);
      } else {
        this.foreign.push(url);
      }
    });
    page.on("response", async (response) => {
      try {
        this.bodies.push({ url: response.url(), text: await response.text() });
      } catch {
        // A navigation or a download has no body to read here.
      }
    });
    page.on("console", (message) => {
      if (message.type() === "error") {
        // A refused API call shows in words on the page; the browser's own
        // "Failed to load resource" line for it is not a page error.
        if (!/^Failed to load resource: the server responded with a status of (401|403|404|409)/.test(message.text())) {
          this.problems.push(`console error: ${message.text()}`);
        }
      }
    });
    page.on("pageerror", (error) => this.problems.push(`uncaught exception: ${error.message}`));
  }

  /**
   * Runs `body` while the page may navigate (top level, nothing else) to
   * `origin`: an identity provider's pages, to sign in or out there. Those
   * navigations are listed in `navigations`; any other request to another
   * origin still fails `check`. Answers what `body` answers.
   */
  async navigatingTo(origin, body) {
    this.navigationOrigins.add(origin);
    try {
      return await body();
    } finally {
      this.navigationOrigins.delete(origin);
    }
  }

  /** Fails on any request to another origin, CSP violation or script error so far. */
  check() {
    assert.deepEqual(this.foreign, [], `the page made requests to other origins than ${this.origin}`);
    assert.deepEqual(this.problems, [], "the page reported errors (a CSP violation is one)");
    assert.ok(this.requests.length > 0, "no request was recorded: the guard is not watching");
  }

  /** Fails if any text the page received contains one of `needles`. */
  assertNeverReceived(needles) {
    for (const { url, text } of this.bodies) {
      for (const needle of needles) {
        assert.ok(!text.includes(needle), `the page received ${needle} in the answer of ${url}`);
      }
    }
  }
}

/**
 * Checks the Content-Security-Policy of `GET /`: present, and strict (no
 * inline or eval'd script, nothing from other origins).
 */
export async function assertStrictCsp(base) {
  const response = await fetch(`${base}/`);
  assert.equal(response.status, 200, "GET / answers the console");
  const csp = response.headers.get("content-security-policy");
  assert.ok(csp, "GET / carries a Content-Security-Policy header");
  assert.ok(!/unsafe-inline|unsafe-eval|unsafe-hashes|\*/.test(csp), `the CSP allows no inline, eval'd or wildcard source: ${csp}`);
  const directives = Object.fromEntries(
    csp
      .split(";")
      .map((part) => part.trim().split(/\s+/))
      .filter((words) => words[0])
      .map(([name, ...sources]) => [name.toLowerCase(), sources]),
  );
  assert.deepEqual(directives["default-src"], ["'none'"], `default-src 'none': ${csp}`);
  assert.deepEqual(directives["script-src"], ["'self'"], `script-src 'self' only: ${csp}`);
  assert.deepEqual(directives["style-src"], ["'self'"], `style-src 'self' only: ${csp}`);
  assert.deepEqual(directives["connect-src"], ["'self'"], `connect-src 'self' only: ${csp}`);
  assert.deepEqual(directives["frame-ancestors"], ["'none'"], `frame-ancestors 'none': ${csp}`);
  assert.deepEqual(directives["base-uri"], ["'none'"], `base-uri 'none': ${csp}`);
  const html = await response.text();
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), "index.html has no inline <script>");
  assert.ok(!/\sstyle=/i.test(html), "index.html has no inline style attribute");
  assert.ok(!/\son[a-z]+=/i.test(html), "index.html has no on*= handler attribute");
}

/** A GET of the API with a bearer token, straight from Node (not the page). */
export async function api(base, path, token) {
  const url = path.startsWith("http") ? path : `${base}${path}`;
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const text = await response.text();
  assert.equal(response.status, 200, `GET ${url}: ${response.status} ${text}`);
  return response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text;
}

/** The bytes a GET of the API answers, with a bearer token, straight from Node. */
export async function apiBytes(base, path, token) {
  const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200, `GET ${path}: ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

/** Every row of a usage API answer, following nextLink. */
export async function usageRows(base, path, token) {
  const rows = [];
  let next = path;
  while (next) {
    const page = await api(base, next, token);
    rows.push(...page.value);
    next = page.nextLink;
  }
  return rows;
}

/** Quantity per meter id (lower case) of usage API rows, with each meter's name. */
export function totalsByMeter(rows) {
  const totals = new Map();
  for (const { properties } of rows) {
    const id = properties.meterId.toLowerCase();
    const entry = totals.get(id) ?? { name: properties.meterName, quantity: 0 };
    entry.quantity += properties.quantity;
    totals.set(id, entry);
  }
  return totals;
}

/**
 * What the tenant usage API totals per meter (see `totalsByMeter`) for
 * `subscription` over UTC days `from`..`to`, read with the tenant's token;
 * an empty range fails (a comparison with it would prove nothing).
 */
export async function tenantUsageTotals(base, token, subscription, from, to) {
  const { start, end } = reportedBounds(from, to);
  const rows = await usageRows(
    base,
    `/subscriptions/${subscription}/providers/Microsoft.Commerce/UsageAggregates?${API_VERSION}` +
      `&reportedStartTime=${start}&reportedEndTime=${end}&aggregationGranularity=Daily&showDetails=true`,
    token,
  );
  assert.ok(rows.length > 0, "the range holds the tenant's usage (else the comparison proves nothing)");
  return totalsByMeter(rows);
}

/** Reported-time bounds of UTC days `from`..`to`, both included. */
export function reportedBounds(from, to) {
  const end = new Date(`${to}T00:00:00Z`);
  end.setUTCDate(end.getUTCDate() + 1);
  return { start: `${from}T00:00:00Z`, end: end.toISOString().replace(".000Z", "Z") };
}

/** A number as the page writes it ("1,234.56", "1 234,5 Hours" is not expected). */
export function parseShown(text) {
  const match = text.replace(/[,\u00a0\u202f ]/g, "").match(/-?\d+(\.\d+)?/);
  assert.ok(match, `"${text}" shows no number`);
  return { value: Number(match[0]), decimals: match[1] ? match[1].length - 1 : 0 };
}

/** Asserts a shown number is `expected` rounded to what it shows. */
export function assertShownQuantity(text, expected, what) {
  const { value, decimals } = parseShown(text);
  const tolerance = 0.5 * 10 ** -Math.max(decimals, 0) + 1e-9 * Math.abs(expected);
  assert.ok(Math.abs(value - expected) <= tolerance, `${what}: the page shows ${text}, the usage API totals ${expected}`);
}

/**
 * Reads the usage explorer's "Totals by meter" table: the cells of each row
 * (Meter | Unit | Quantity) as text.
 */
export async function totalsTable(page) {
  const table = page.getByRole("table", { name: /^Totals by meter/ });
  await table.waitFor();
  const rows = table.getByRole("row");
  const cells = [];
  for (const row of await rows.all()) {
    // The meter's name may be the row's header cell.
    const texts = (await row.getByRole("rowheader").or(row.getByRole("cell")).allInnerTexts()).map((t) => t.trim());
    if (texts.length > 0) cells.push(texts);
  }
  return cells;
}

/**
 * Asserts the usage explorer's totals are the usage API's: one row per
 * meter, each quantity the API's sum.
 */
export async function assertTotalsMatch(page, expected) {
  assertTotalsShown(await totalsTable(page), expected);
}

/**
 * Asserts the cells of a "Totals by meter" table (rows of Meter | Unit |
 * Quantity, as text, whichever browser read them) are `expected`, the
 * usage API's totals by meter.
 */
export function assertTotalsShown(shown, expected) {
  assert.equal(shown.length, expected.size, `one totals row per meter: shown ${JSON.stringify(shown)}`);
  for (const [id, { name, quantity }] of expected) {
    const row = shown.find(([meter]) => meter.includes(name) || meter.toLowerCase().includes(id));
    assert.ok(row, `the totals show meter ${name} (${id}): ${JSON.stringify(shown)}`);
    assertShownQuantity(row[2], quantity, `total of ${name}`);
  }
}

/** Signs in through the sign-in page with `token`. */
export async function signIn(page, base, token) {
  await page.goto(`${base}/`);
  await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Waits for the page whose one h1 is `name`. */
export async function expectPage(page, name) {
  const heading = page.getByRole("heading", { level: 1, name, exact: true });
  await heading.waitFor();
  assert.equal(await page.getByRole("heading", { level: 1 }).count(), 1, `one h1 on the page "${name}"`);
}

/** The session cookie the browser holds. */
export async function sessionCookie(context) {
  return assertSessionCookie(await context.cookies());
}

/**
 * The session cookie among `cookies` (as a browser lists them: name, value,
 * httpOnly, sameSite), asserted HttpOnly and SameSite=Strict.
 */
export function assertSessionCookie(cookies) {
  const cookie = cookies.find((c) => c.name === "tally_session");
  assert.ok(cookie, "signing in set the tally_session cookie");
  assert.ok(cookie.httpOnly, "the session cookie is HttpOnly");
  assert.equal(cookie.sameSite, "Strict", "the session cookie is SameSite=Strict");
  return cookie;
}

/** Asserts a session cookie no longer opens a session. */
export async function assertSessionEnded(base, cookie) {
  const response = await fetch(`${base}/v1/session`, { headers: { cookie: `${cookie.name}=${cookie.value}` } });
  assert.equal(response.status, 401, "after signing out, the old cookie no longer opens GET /v1/session");
}

/** Where screenshots go (created), and a function that takes one. */
export function screenshots() {
  const dir = setting("TALLY_SCREENSHOTS");
  mkdirSync(dir, { recursive: true });
  return async (page, name) => {
    await page.screenshot({ path: join(dir, `${name}.png`), fullPage: false });
  };
}

export { assert };
