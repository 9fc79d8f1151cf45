// A tenant's console, end to end: signed in, they see their usage (totalling
// what the tenant usage API totals) and their subscriptions, and nothing
// else: no operator page through the page, no operator endpoint and no other
// subscription through the console's own endpoints with their cookie, and no
// other subscription's id anywhere the page received. Sign-out ends the
// session. Every request stays on the host's origin; the CSP of / is strict.

import {
  API_VERSION,
  assert,
  assertSessionEnded,
  assertStrictCsp,
  assertTotalsMatch,
  expectPage,
  launch,
  list,
  reportedBounds,
  scenario,
  screenshots,
  sessionCookie,
  setting,
  signIn,
  step,
  tenantUsageTotals,
} from "./lib/harness.mjs";

const base = setting("TALLY_URL");
const tenant = setting("TALLY_TENANT_TOKEN");
const subscription = setting("TALLY_TENANT_SUBSCRIPTION");
const others = list("TALLY_OTHER_SUBSCRIPTIONS");
const adapters = list("TALLY_ADAPTERS");
const [from, to] = [setting("TALLY_USAGE_FROM"), setting("TALLY_USAGE_TO")];

/** The operator's pages, and the h1 each would show. */
const OPERATOR_PAGES = [
  ["#/overview", "Overview"],
  ["#/meters", "Meters"],
  ["#/adapters", "Adapters"],
  ["#/documents", "Documents"],
  ["#/tokens", "Tokens"],
];

scenario("tenant console", 180, async () => {
  assert.ok(others.length > 0, "other subscriptions exist (else isolation proves nothing)");
  await step("GET / carries a strict CSP", () => assertStrictCsp(base));
  const { context, page, guard, close } = await launch(new URL(base).origin);
  const shoot = screenshots();
  /** Fails if the page shows another subscription's id or an adapter's name. */
  const assertShowsNothingElse = async (where) => {
    const html = await page.content();
    for (const other of others) {
      assert.ok(!html.includes(other), `${where}: the page shows another subscription, ${other}`);
    }
    for (const adapter of adapters) {
      assert.ok(!(await page.getByText(adapter, { exact: true }).count()), `${where}: the page names adapter ${adapter}`);
    }
  };
  try {
    await step("sign in as tenant: their usage, their nav", async () => {
      await signIn(page, base, tenant);
      await expectPage(page, "Usage");
      assert.match(page.url(), /#\/usage(\?|$)/, `a tenant starts on #/usage, not ${page.url()}`);
      const nav = page.getByRole("navigation", { name: "Console" });
      const links = (await nav.getByRole("link").allInnerTexts()).map((t) => t.trim());
      assert.deepEqual(links.sort(), ["Statements", "Subscriptions", "Usage"], "a tenant's nav has Usage, Subscriptions and Statements only");
      const banner = page.getByRole("banner");
      await banner.getByText(/tenant/i).first().waitFor();
      await banner.getByText(subscription).first().waitFor();
      await assertShowsNothingElse("the tenant's usage page");
    });

    await step("the usage explorer totals what the tenant usage API totals", async () => {
      const expected = await tenantUsageTotals(base, tenant, subscription, from, to);
      await page.getByLabel("From", { exact: true }).fill(from);
      await page.getByLabel("To", { exact: true }).fill(to);
      await page.getByLabel("Group by").selectOption({ label: "Subscription" });
      await page.getByRole("button", { name: "Show" }).click();
      const table = page.getByRole("table", { name: /^Usage by/ });
      await table.waitFor();
      await assertTotalsMatch(page, expected);
      const shownUrl = await page.getByLabel("Azure usage API URL").innerText();
      assert.ok(shownUrl.includes(`/subscriptions/${subscription}/`), `the tenant API URL names their subscription: ${shownUrl}`);
      await table.getByText(subscription).first().waitFor();
      await assertShowsNothingElse("the usage explorer by subscription");
      await shoot(page, "tenant-usage");
      await page.setViewportSize({ width: 390, height: 844 });
      await page.getByRole("heading", { level: 1, name: "Usage" }).scrollIntoViewIfNeeded();
      await shoot(page, "tenant-usage-phone");
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await step("the subscriptions page lists theirs only", async () => {
      await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Subscriptions", exact: true }).click();
      await expectPage(page, "Subscriptions");
      await page.getByRole("main").getByText(subscription).first().waitFor();
      await assertShowsNothingElse("the subscriptions page");
    });

    await step("the operator's pages are not reachable through the page", async () => {
      for (const [hash, heading] of OPERATOR_PAGES) {
        // A fresh load of the address, as a link or a typed URL would open it.
        await page.goto("about:blank");
        await page.goto(`${base}/${hash}`);
        await page.getByRole("heading", { level: 1 }).first().waitFor();
        // Let the page settle: whatever it fetched has answered.
        await page.waitForLoadState("networkidle");
        const h1 = await page.getByRole("heading", { level: 1 }).first().innerText();
        assert.notEqual(h1.trim(), heading, `${hash} shows the operator's page "${heading}" to a tenant`);
        await assertShowsNothingElse(hash);
      }
      await page.goto("about:blank");
      await page.goto(`${base}/#/adapters/${adapters[0]}`);
      await page.waitForLoadState("networkidle");
      assert.equal(await page.getByRole("heading", { level: 1, name: adapters[0] }).count(), 0, "an adapter's page is not shown to a tenant");
    });

    const cookie = await sessionCookie(context);
    await step("the console's endpoints refuse the tenant's cookie for operator data and other subscriptions", async () => {
      const withCookie = (path) => fetch(`${base}${path}`, { headers: { cookie: `${cookie.name}=${cookie.value}` } });
      const session = await withCookie("/v1/session");
      assert.equal(session.status, 200, "the cookie opens the session (else the refusals below prove nothing)");
      const body = await session.json();
      assert.equal(body.role, "tenant");
      assert.deepEqual(body.subscriptions, [subscription]);
      const { start, end } = reportedBounds(from, to);
      const range = `from=${start}&to=${end}&granularity=Daily&groupBy=meter`;
      const own = await withCookie(`/v1/usage/summary?${range}&subscription=${subscription}`);
      assert.equal(own.status, 200, "their own summary is served with the cookie");
      for (const path of [
        "/v1/overview",
        "/v1/tokens",
        "/v1/adapters",
        ...others.map((other) => `/v1/usage/summary?${range}&subscription=${other}`),
        ...others.map(
          (other) =>
            `/subscriptions/${other}/providers/Microsoft.Commerce/UsageAggregates?${API_VERSION}` +
            `&reportedStartTime=${start}&reportedEndTime=${end}&aggregationGranularity=Daily`,
        ),
      ]) {
        const response = await withCookie(path);
        const text = await response.text();
        assert.equal(response.status, 403, `GET ${path} with the tenant's cookie: ${response.status} ${text}`);
        for (const other of others) assert.ok(!text.includes(other) || path.includes(other), `the refusal of ${path} names ${other}`);
      }
      // Everything the tenant's summary says is theirs.
      const summary = await (await withCookie(`/v1/usage/summary?from=${start}&to=${end}&granularity=Daily&groupBy=subscription`)).json();
      assert.deepEqual([...new Set(summary.rows.map((row) => row.group))], [subscription], "a tenant's summary by subscription is theirs only");
    });

    await step("nothing the page received names another subscription", async () => guard.assertNeverReceived(others));

    await step("sign out ends the session", async () => {
      await page.goto(`${base}/#/usage`);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
      await assertSessionEnded(base, cookie);
    });

    await step("no request left the host's origin; no CSP violation or script error", async () => guard.check());
  } finally {
    await close();
  }
});
