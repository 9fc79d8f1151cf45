// Verify when a published document was altered behind the host's back (the
// test rewrote its bytes in the database): the run page's Verify shows the
// window as a mismatch with the API's reason, the altered document as
// differing where the verify API says it first differs (offset, line,
// column), and every other document as matching. Every request stays on
// the host's origin; no CSP violation or script error.

import { assert, expectPage, launch, scenario, screenshots, setting, signIn, step } from "./lib/harness.mjs";

const base = setting("TALLY_URL");
const operator = setting("TALLY_OPERATOR_TOKEN");
const adapter = setting("TALLY_STATEMENT_ADAPTER");
const runId = Number(setting("TALLY_STATEMENT_RUN"));
const altered = setting("TALLY_ALTERED_DOCUMENT");

/** A count as the console writes it ("1,234"). */
const count = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 0 });

scenario("verify finds an altered document", 120, async () => {
  const { page, guard, close } = await launch(new URL(base).origin);
  const shoot = screenshots();
  try {
    const report = await step("the verify API finds the altered document (set up by the test)", async () => {
      const run = await (await fetch(`${base}/v1/adapters/${adapter}/runs/${runId}`, { headers: { authorization: `Bearer ${operator}` } })).json();
      const response = await fetch(`${base}/v1/adapters/${adapter}/verify?from=${run.windowStart}&to=${run.windowEnd}`, {
        method: "POST",
        headers: { authorization: `Bearer ${operator}` },
      });
      assert.equal(response.status, 200, `POST verify: ${response.status}`);
      const [window] = (await response.json()).windows;
      assert.equal(window.result, "mismatch", JSON.stringify(window));
      const document = window.documents.find((one) => one.name === altered);
      assert.equal(document?.result, "differs", `${altered} differs: ${JSON.stringify(window.documents)}`);
      assert.ok(document.firstDifference, `the API says where ${altered} first differs`);
      return window;
    });

    await step(`an operator opens run ${runId} and presses Verify: a mismatch, with the API's reason`, async () => {
      await signIn(page, base, operator);
      await expectPage(page, "Overview");
      await page.goto(`${base}/#/adapters/${adapter}/runs/${runId}`);
      await expectPage(page, `Run ${runId}`);
      await page.getByRole("button", { name: "Verify", exact: true }).click();
      const verdict = page.getByRole("alert").filter({ hasText: "Mismatch" });
      await verdict.waitFor({ timeout: 90_000 });
      await verdict.filter({ hasText: report.reason }).waitFor();
    });

    await step(`${altered} differs where the API says; every other document matches`, async () => {
      const rows = page.getByRole("table", { name: /^Documents verified/ }).locator("tbody tr");
      assert.equal(await rows.count(), report.documents.length, "one row per document verified");
      for (const document of report.documents) {
        const row = rows.filter({ has: page.getByRole("rowheader", { name: document.name, exact: true }) });
        if (document.name === altered) {
          await row.getByText("Differs", { exact: true }).waitFor();
          const { offset, line, column } = document.firstDifference;
          await row.getByText(`offset ${count.format(offset)} (line ${count.format(line)}, column ${count.format(column)})`, { exact: true }).waitFor();
        } else {
          assert.equal(document.result, "match", `only ${altered} was altered: ${JSON.stringify(document)}`);
          await row.getByText("Match", { exact: true }).waitFor();
        }
      }
      await page.getByRole("heading", { name: "Verify", exact: true }).evaluate((heading) => heading.scrollIntoView({ block: "start" }));
      await shoot(page, "run-mismatch");
    });

    await step("no request left the host's origin; no CSP violation or script error", async () => guard.check());
  } finally {
    await close();
  }
});
