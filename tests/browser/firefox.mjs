// The console's main path in the second browser, Firefox: a tenant signs
// in, sees Usage, Subscriptions and Statements only, the usage explorer's
// totals are what the tenant usage API totals, and sign-out ends the
// session; no request leaves the host's origin, no script error, no CSP
// violation.
// A smoke of the path the Chromium scenarios check in depth.

import {
  assert,
  assertSessionCookie,
  assertSessionEnded,
  assertTotalsShown,
  scenario,
  screenshots,
  setting,
  step,
  tenantUsageTotals,
} from "./lib/harness.mjs";
import { aria, firefoxTotalsTable, labelled, launchFirefox, texts } from "./lib/firefox.mjs";

const base = setting("TALLY_URL");
const tenant = setting("TALLY_TENANT_TOKEN");
const subscription = setting("TALLY_TENANT_SUBSCRIPTION");
const [from, to] = [setting("TALLY_USAGE_FROM"), setting("TALLY_USAGE_TO")];

scenario("tenant console in Firefox", 180, async () => {
  const { browser, page, guard, close } = await launchFirefox(new URL(base).origin);
  const shoot = screenshots();
  try {
    await step("sign in as tenant: the usage page, their nav", async () => {
      await page.goto(`${base}/`);
      await page.waitForSelector(aria("heading", "Sign in to tally"));
      await (await labelled(page, "Token")).fill(tenant);
      await page.locator(aria("button", "Sign in")).click();
      await page.waitForSelector(aria("heading", "Usage"));
      assert.equal((await texts(page, "h1")).length, 1, "one h1 on the usage page");
      assert.match(page.url(), /#\/usage(\?|$)/, `a tenant starts on #/usage, not ${page.url()}`);
      const nav = await page.waitForSelector(aria("navigation", "Console"));
      const links = await texts(nav, '::-p-aria([role="link"])');
      assert.deepEqual(links.sort(), ["Statements", "Subscriptions", "Usage"], "a tenant's nav has Usage, Subscriptions and Statements only");
    });

    await step("the usage explorer totals what the tenant usage API totals", async () => {
      const expected = await tenantUsageTotals(base, tenant, subscription, from, to);
      await (await labelled(page, "From")).fill(from);
      await (await labelled(page, "To")).fill(to);
      await page.locator(aria("button", "Show")).click();
      // Show writes the range into the address and clears the old results at once.
      await page.waitForFunction((days) => days.every((day) => location.hash.includes(day)), {}, [`from=${from}`, `to=${to}`]);
      assertTotalsShown(await firefoxTotalsTable(page), expected);
      await shoot(page, "firefox-tenant-usage");
    });

    const cookie = assertSessionCookie(await browser.cookies());
    await step("sign out ends the session", async () => {
      await page.locator(aria("button", "Sign out")).click();
      await page.waitForSelector(aria("heading", "Sign in to tally"));
      await assertSessionEnded(base, cookie);
    });

    await step("no request left the host's origin; no CSP violation or script error", async () => guard.check());
  } finally {
    await close();
  }
});
