// The operator's console, end to end: a refused sign-in shows the API's
// reason, the overview, the usage explorer totalling what the usage API
// totals, an adapter run from its page whose run appears and whose document
// downloads, a failing adapter's reason, CSRF on the cookie, and sign-out.
// Every request stays on the host's origin; the CSP of / is strict.

import { readFileSync } from "node:fs";
import {
  API_VERSION,
  api,
  apiBytes,
  assert,
  assertSessionEnded,
  assertStrictCsp,
  assertTotalsMatch,
  expectPage,
  launch,
  reportedBounds,
  scenario,
  screenshots,
  sessionCookie,
  setting,
  signIn,
  step,
  totalsByMeter,
  usageRows,
} from "./lib/harness.mjs";

const base = setting("TALLY_URL");
const operator = setting("TALLY_OPERATOR_TOKEN");
const [from, to] = [setting("TALLY_USAGE_FROM"), setting("TALLY_USAGE_TO")];
const adapter = setting("TALLY_ADAPTER");
const failing = setting("TALLY_FAILING_ADAPTER");
const [runFrom, runTo] = [setting("TALLY_RUN_FROM"), setting("TALLY_RUN_TO")];

scenario("operator console", 180, async () => {
  await step("GET / carries a strict CSP", () => assertStrictCsp(base));
  const { context, page, guard, close } = await launch(new URL(base).origin);
  const shoot = screenshots();
  try {
    await step("an unknown token is refused with the API's message", async () => {
      const refused = await fetch(`${base}/v1/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: "tly_not-a-token" }),
      });
      assert.equal(refused.status, 401);
      const { error } = await refused.json();
      await signIn(page, base, "tly_not-a-token");
      const alert = page.getByRole("alert");
      await alert.filter({ hasText: error.message }).waitFor();
    });

    await step("sign in as operator: the overview", async () => {
      await signIn(page, base, operator);
      await expectPage(page, "Overview");
      assert.match(page.url(), /#\/overview(\?|$)/, `an operator starts on #/overview, not ${page.url()}`);
      const nav = page.getByRole("navigation", { name: "Console" });
      for (const link of ["Overview", "Usage", "Subscriptions", "Statements", "Meters", "Adapters", "Documents", "Tokens"]) {
        await nav.getByRole("link", { name: link, exact: true }).waitFor();
      }
      await page.getByRole("button", { name: "Sign out" }).waitFor();
      await page.getByRole("banner").getByText(/operator/i).first().waitFor();
      await page.getByRole("status").filter({ hasText: "Loading…" }).waitFor({ state: "detached" });
      await shoot(page, "operator-overview");
    });

    await step("the usage explorer totals what the provider usage API totals", async () => {
      const { start, end } = reportedBounds(from, to);
      const rows = await usageRows(
        base,
        `/subscriptions/default-provider/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?${API_VERSION}` +
          `&reportedStartTime=${start}&reportedEndTime=${end}&aggregationGranularity=Daily`,
        operator,
      );
      assert.ok(rows.length > 0, "the range holds usage (else the comparison proves nothing)");
      const expected = totalsByMeter(rows);

      await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Usage", exact: true }).click();
      await expectPage(page, "Usage");
      await page.getByLabel("From", { exact: true }).fill(from);
      await page.getByLabel("To", { exact: true }).fill(to);
      await page.getByLabel("Granularity").selectOption({ label: "Daily" });
      await page.getByLabel("Group by").selectOption({ label: "Meter" });
      await page.getByRole("button", { name: "Show" }).click();
      await page.getByRole("table", { name: /^Usage by/ }).waitFor();
      await assertTotalsMatch(page, expected);
      await page.getByRole("heading", { level: 1, name: "Usage" }).scrollIntoViewIfNeeded();
      await shoot(page, "usage-explorer");

      const shownUrl = await page.getByLabel("Azure usage API URL").innerText();
      assert.ok(shownUrl.includes(`reportedStartTime=${start}`), `the API URL shown starts at ${start}: ${shownUrl}`);
      assert.ok(shownUrl.includes(`reportedEndTime=${end}`), `the API URL shown ends at ${end}: ${shownUrl}`);
      await page.getByLabel("Quantity by meter over time").waitFor();

      // The CSV download holds the same totals.
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("link", { name: "Download CSV" }).click(),
      ]);
      const csv = readFileSync(await download.path(), "utf8").trim().split(/\r?\n/);
      assert.equal(csv[0], "group,meter_id,meter_name,unit,quantity", "the CSV's header");
      const fromCsv = new Map();
      for (const line of csv.slice(1)) {
        const fields = line.split(",");
        const id = fields[1].toLowerCase();
        fromCsv.set(id, (fromCsv.get(id) ?? 0) + Number(fields.at(-1)));
      }
      assert.deepEqual([...fromCsv.keys()].sort(), [...expected.keys()].sort(), "the CSV has the same meters");
      for (const [id, { quantity }] of expected) {
        assert.ok(Math.abs(fromCsv.get(id) - quantity) <= 1e-6 * Math.max(1, quantity), `CSV total of ${id}`);
      }
    });

    await step("a failing adapter shows its reason in the adapters list", async () => {
      const installations = await api(base, "/v1/adapters", operator);
      const held = installations.find((i) => i.name === failing);
      assert.ok(held?.heldBy?.reason, `${failing} is held by a failed run (set up by the test)`);
      await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Adapters", exact: true }).click();
      await expectPage(page, "Adapters");
      const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: failing, exact: true }) });
      const reason = held.heldBy.reason.split("\n")[0].slice(0, 60);
      await row.filter({ hasText: reason }).waitFor();
    });

    let run;
    await step(`run ${adapter} for ${runFrom}..${runTo} from its page: its runs appear`, async () => {
      const before = new Set((await api(base, `/v1/adapters/${adapter}/runs`, operator)).map((r) => r.id));
      await page.getByRole("link", { name: adapter, exact: true }).click();
      await expectPage(page, adapter);
      await page.getByLabel("From", { exact: true }).fill(runFrom);
      await page.getByLabel("To", { exact: true }).fill(runTo);
      await page.getByRole("button", { name: "Run", exact: true }).click();
      const fresh = await waitFor(`the new runs of ${adapter} finish`, async () => {
        const runs = await api(base, `/v1/adapters/${adapter}/runs`, operator);
        const fresh = runs.filter((r) => !before.has(r.id));
        return fresh.length > 0 && fresh.every((r) => ["succeeded", "failed"].includes(r.status)) ? fresh : null;
      });
      const days = fresh.map((r) => r.windowStart).sort();
      assert.deepEqual(days, daysBetween(runFrom, runTo), "one run per day asked for, both days included");
      assert.ok(fresh.every((r) => r.status === "succeeded"), `the runs succeeded: ${JSON.stringify(fresh)}`);
      const runs = page.getByRole("table", { name: /^Runs/ });
      for (const { id } of fresh) await runs.getByRole("link", { name: `Run ${id}`, exact: true }).waitFor();
      run = fresh[0];
      // Drawn again now that they have finished, for the screenshot.
      await page.reload();
      await runs.getByRole("row").filter({ hasText: "running" }).waitFor({ state: "detached" });
      await runs.evaluate((table) => table.scrollIntoView({ block: "start" }));
      await shoot(page, "adapter-runs");
    });

    await step("the run's page shows its log and its document downloads", async () => {
      await page.getByRole("table", { name: /^Runs/ }).getByRole("link", { name: `Run ${run.id}`, exact: true }).click();
      await expectPage(page, `Run ${run.id}`);
      await page.getByRole("heading", { name: "Log", exact: true }).waitFor();
      const detail = await api(base, `/v1/adapters/${adapter}/runs/${run.id}`, operator);
      assert.ok(detail.documents.length > 0, "the run wrote documents");
      for (const document of detail.documents) {
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("link", { name: document.name, exact: true }).click(),
        ]);
        const got = readFileSync(await download.path());
        const want = await apiBytes(base, `/v1/adapters/${adapter}/runs/${run.id}/documents/${document.name}`, operator);
        assert.ok(got.length > 0 && got.equals(want), `${document.name} downloads whole (${got.length} of ${want.length} bytes)`);
      }
    });

    const cookie = await sessionCookie(context);
    await step("with the cookie, a state change needs the CSRF token", async () => {
      const response = await fetch(`${base}/v1/session`, {
        method: "DELETE",
        headers: { cookie: `${cookie.name}=${cookie.value}` },
      });
      assert.equal(response.status, 403, "DELETE /v1/session with the cookie alone is refused");
      assert.equal((await response.json()).error.code, "CsrfTokenMissing");
    });

    await step("sign out ends the session", async () => {
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
      await assertSessionEnded(base, cookie);
    });

    await step("no request left the host's origin; no CSP violation or script error", async () => guard.check());
  } finally {
    await close();
  }
});

/** Window starts of the UTC days `first`..`last`, both included. */
function daysBetween(first, last) {
  const days = [];
  for (let day = new Date(`${first}T00:00:00Z`); day <= new Date(`${last}T00:00:00Z`); day.setUTCDate(day.getUTCDate() + 1)) {
    days.push(day.toISOString().replace(".000Z", "Z"));
  }
  return days;
}

/** Polls `probe` until it answers something truthy (a minute at most). */
async function waitFor(what, probe) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = await probe();
    if (value) return value;
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
