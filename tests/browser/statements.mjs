// Statements and their verification, end to end: a tenant signs in, opens
// Statements and sees every document the tenant documents API lists for
// their subscription, grouped by window, each with its SHA-256 and its run's
// provenance (contract, component, configuration and usage digests); a
// statement downloads whole (the bytes the API serves, whose SHA-256 is the
// one listed) and a digest's Copy button copies the whole value; nothing
// the page received names another subscription. Then an operator opens the
// run that published it, sees its provenance and each document's owner and
// SHA-256, presses Verify and sees every document match. Every request
// stays on the host's origin; no CSP violation or script error.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  api,
  apiBytes,
  assert,
  expectPage,
  launch,
  list,
  reportedBounds,
  scenario,
  screenshots,
  setting,
  signIn,
  step,
} from "./lib/harness.mjs";

const base = setting("TALLY_URL");
const operator = setting("TALLY_OPERATOR_TOKEN");
const tenant = setting("TALLY_TENANT_TOKEN");
const subscription = setting("TALLY_TENANT_SUBSCRIPTION");
const others = list("TALLY_OTHER_SUBSCRIPTIONS");
const adapter = setting("TALLY_STATEMENT_ADAPTER");
// The UTC days the statements' windows start in, both included.
const [from, to] = [setting("TALLY_STATEMENT_FROM"), setting("TALLY_STATEMENT_TO")];

scenario("statements", 200, async () => {
  assert.ok(others.length > 0, "other subscriptions exist (else isolation proves nothing)");
  const origin = new URL(base).origin;
  const { context, page, guard, close } = await launch(origin);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  const shoot = screenshots();
  const { start, end } = reportedBounds(from, to);
  const listed = (await api(base, `/v1/subscriptions/${subscription}/documents?from=${start}&to=${end}`, tenant)).value;
  const digestShown = (hex) => page.getByRole("main").locator(`[data-digest="${hex}"]`);
  try {
    await step("the tenant documents API lists statements of the tenant's subscription (set up by the test)", async () => {
      assert.ok(listed.length > 0, `documents are published to ${subscription} (else the page proves nothing)`);
      for (const document of listed) {
        assert.equal(document.adapter, adapter, `${document.name} is published by ${adapter}`);
        assert.ok(document.provenance, `${document.name} has a provenance`);
      }
    });

    await step("a tenant signs in and opens Statements", async () => {
      await signIn(page, base, tenant);
      await expectPage(page, "Usage");
      await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Statements", exact: true }).click();
      await expectPage(page, "Statements");
      const choices = (await page.getByLabel("Subscription").locator("option").allInnerTexts()).map((t) => t.trim());
      assert.deepEqual(choices, [subscription], "a tenant chooses among their own subscriptions only");
      await page.getByLabel("From", { exact: true }).fill(from);
      await page.getByLabel("To", { exact: true }).fill(to);
      await page.getByRole("button", { name: "Show" }).click();
      await page.getByRole("main").getByRole("status").filter({ hasText: "Loading…" }).waitFor({ state: "detached" });
    });

    await step("the page shows every listed document with its SHA-256 and its run's provenance", async () => {
      const links = page.getByRole("main").locator("a[download]");
      await links.first().waitFor();
      assert.equal(await links.count(), listed.length, "one download link per listed document");
      for (const document of listed) {
        const link = page.locator(`a[download][href="${document.links.download}"]`);
        assert.equal((await link.innerText()).trim(), document.name, `the link of ${document.links.download} names ${document.name}`);
        const row = page.getByRole("row").filter({ has: link });
        await row.locator(`[data-digest="${document.sha256}"]`).waitFor();
        const { contract, component, config, usage } = document.provenance;
        await page.getByRole("main").getByText(contract, { exact: true }).first().waitFor();
        for (const hex of [component, config, usage]) {
          assert.match(hex, /^[0-9a-f]{64}$/, "provenance digests are SHA-256 in lower-case hex");
          assert.ok((await digestShown(hex).count()) > 0, `the page shows the digest ${hex} of ${document.name}'s provenance`);
          // Shortened, the whole value on hover.
          assert.equal(await digestShown(hex).first().locator("code").getAttribute("title"), hex);
        }
      }
      await page.getByRole("heading", { level: 1, name: "Statements" }).scrollIntoViewIfNeeded();
      await shoot(page, "tenant-statements");
      await page.setViewportSize({ width: 390, height: 844 });
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `the page fits a phone's width (${width} px wide)`);
      await page.getByRole("heading", { level: 2 }).first().evaluate((heading) => heading.scrollIntoView({ block: "start" }));
      await shoot(page, "tenant-statements-phone");
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await step("a statement downloads whole: the bytes the API serves, with the SHA-256 listed", async () => {
      const document = listed.find((one) => one.name.endsWith(".html")) ?? listed[0];
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.locator(`a[download][href="${document.links.download}"]`).click(),
      ]);
      const got = readFileSync(await download.path());
      const want = await apiBytes(base, document.links.download, tenant);
      assert.ok(got.length > 0 && got.equals(want), `${document.name} downloads whole (${got.length} of ${want.length} bytes)`);
      assert.equal(createHash("sha256").update(got).digest("hex"), document.sha256, `the SHA-256 of ${document.name} is the one listed`);
      assert.equal(download.suggestedFilename(), document.name, "the download keeps the document's name");
    });

    await step("Copy copies a digest's whole value", async () => {
      const { component } = listed[0].provenance;
      await digestShown(component).first().getByRole("button", { name: "Copy component SHA-256" }).click();
      await digestShown(component).first().getByRole("button", { name: "Copy component SHA-256" }).filter({ hasText: "Copied" }).waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), component);
    });

    await step("nothing the page received names another subscription", async () => guard.assertNeverReceived(others));

    await step("the tenant signs out", async () => {
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
    });

    const runId = listed[0].runId;
    await step(`an operator opens run ${runId} of ${adapter}: its provenance, its documents' owners and SHA-256`, async () => {
      await signIn(page, base, operator);
      await expectPage(page, "Overview");
      await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Adapters", exact: true }).click();
      await expectPage(page, "Adapters");
      await page.getByRole("link", { name: adapter, exact: true }).click();
      await expectPage(page, adapter);
      await page.getByRole("table", { name: /^Runs/ }).getByRole("link", { name: `Run ${runId}`, exact: true }).click();
      await expectPage(page, `Run ${runId}`);
      const run = await api(base, `/v1/adapters/${adapter}/runs/${runId}`, operator);
      assert.ok(run.provenance, "the run has a provenance");
      assert.equal(run.provenance.contract, listed[0].provenance.contract, "the run's provenance is the one the tenant was shown");
      await page.getByRole("heading", { name: "Provenance", exact: true }).waitFor();
      for (const hex of [run.provenance.component, run.provenance.config, run.provenance.usage]) {
        assert.ok((await digestShown(hex).count()) > 0, `the run page shows the digest ${hex}`);
      }
      const documents = page.getByRole("table", { name: `Documents of run ${runId}` });
      for (const document of run.documents) {
        const row = documents.getByRole("row").filter({ has: page.getByRole("link", { name: document.name, exact: true }) });
        await row.locator(`[data-digest="${document.sha256}"]`).waitFor();
        await row.getByText(document.subscriptionId ?? "Operator (shared)", { exact: true }).waitFor();
      }
      assert.ok(
        run.documents.some((document) => document.subscriptionId?.toLowerCase() === subscription.toLowerCase()),
        `the run published a document owned by ${subscription}`,
      );
    });

    await step("Verify re-derives the run's documents: every one matches", async () => {
      const run = await api(base, `/v1/adapters/${adapter}/runs/${runId}`, operator);
      await page.getByRole("button", { name: "Verify", exact: true }).click();
      const verified = page.getByRole("table", { name: /^Documents verified/ });
      await verified.waitFor({ timeout: 90_000 });
      await page.getByRole("status").filter({ hasText: "Every document matches, byte for byte." }).waitFor();
      const rows = verified.locator("tbody tr");
      assert.equal(await rows.count(), run.documents.length, "one verified row per document of the run");
      for (const document of run.documents) {
        const row = rows.filter({ has: page.getByRole("rowheader", { name: document.name, exact: true }) });
        await row.getByText("Match", { exact: true }).waitFor();
      }
      await page.getByRole("heading", { name: "Provenance", exact: true }).scrollIntoViewIfNeeded();
      await shoot(page, "run-verified");
    });

    await step("no request left the host's origin; no CSP violation or script error", async () => guard.check());
  } finally {
    await close();
  }
});
