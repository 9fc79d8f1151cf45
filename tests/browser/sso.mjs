// Single sign-on, end to end: the sign-in page offers the host's identity
// provider beside the token form; a person follows it, is refused a wrong
// password by the provider (and nobody is signed in), signs in, and lands
// back on the page they asked for as the tenant their token's claims make
// them, with the provider named in the header. Signing out ends the session
// at tally and at the provider, which sends the browser back to the
// console's sign-in page. A forged callback is refused in words. The page
// may leave tally's origin only by top-level navigations to the provider
// while signing in and out; tally's own pages make no other request to
// another origin, and the CSP of / is strict.

import {
  assert,
  assertSessionEnded,
  assertStrictCsp,
  expectPage,
  launch,
  list,
  scenario,
  screenshots,
  sessionCookie,
  setting,
  step,
} from "./lib/harness.mjs";

const base = setting("TALLY_URL");
const issuer = setting("TALLY_OIDC_ISSUER");
const clientId = setting("TALLY_OIDC_CLIENT");
const providerName = setting("TALLY_SSO_PROVIDER");
const [user, password] = [setting("TALLY_SSO_USER"), setting("TALLY_SSO_PASSWORD")];
const subscription = setting("TALLY_TENANT_SUBSCRIPTION");
const others = list("TALLY_OTHER_SUBSCRIPTIONS");
const [from, to] = [setting("TALLY_USAGE_FROM"), setting("TALLY_USAGE_TO")];

const issuerOrigin = new URL(issuer).origin;

scenario("single sign-on", 180, async () => {
  assert.notEqual(issuerOrigin, new URL(base).origin, "the provider is another origin than tally");
  await step("GET / carries a strict CSP", () => assertStrictCsp(base));
  const { context, page, guard, close } = await launch(new URL(base).origin);
  const shoot = screenshots();
  const signInWith = page.getByRole("link", { name: `Sign in with ${providerName}`, exact: true });
  /** Whether the browser holds a tally session cookie. */
  const hasSession = async () => (await context.cookies()).some((cookie) => cookie.name === "tally_session");
  try {
    await step("the sign-in page offers the provider beside the token form", async () => {
      const providers = await (await fetch(`${base}/v1/session/providers`)).json();
      const offered = providers.find((provider) => provider.name === providerName);
      assert.ok(offered, `GET /v1/session/providers offers ${providerName}: ${JSON.stringify(providers)}`);
      await page.goto(`${base}/#/usage`);
      await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
      await signInWith.waitFor();
      const href = await signInWith.getAttribute("href");
      const target = new URL(href, base);
      assert.equal(target.origin, new URL(base).origin, `the button goes to tally first: ${href}`);
      assert.ok(`${target.pathname}${target.search}`.startsWith(offered.signInUrl), `the button follows ${offered.signInUrl}: ${href}`);
      assert.ok(href.includes("return=%23%2Fusage"), `the button asks to come back to #/usage, URL-encoded: ${href}`);
      await page.getByLabel("Token").waitFor();
      await page.getByRole("button", { name: "Sign in", exact: true }).waitFor();
      await shoot(page, "sso-sign-in");
    });

    await step("a wrong password at the provider: its error, and nobody is signed in", () =>
      guard.navigatingTo(issuerOrigin, async () => {
        await signInWith.click();
        await page.getByLabel("Username").waitFor();
        assert.ok(page.url().startsWith(`${issuer}/interaction/`), `the provider's login page: ${page.url()}`);
        assertAuthorizationRequest(guard.navigations);
        await page.getByLabel("Username").fill(user);
        await page.getByLabel("Password").fill(`not-${password}`);
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.getByRole("alert").filter({ hasText: "Wrong username or password." }).waitFor();
        assert.ok(page.url().startsWith(`${issuer}/interaction/`), `still at the provider: ${page.url()}`);
        assert.ok(!(await hasSession()), "a wrong password signs nobody in to tally");
      }),
    );

    await step(`${user} signs in at the provider and lands on her usage`, async () => {
      await guard.navigatingTo(issuerOrigin, async () => {
        await page.getByLabel("Username").fill(user);
        await page.getByLabel("Password").fill(password);
        await page.getByRole("button", { name: "Sign in" }).click();
        await expectPage(page, "Usage");
      });
      assert.match(page.url(), new RegExp(`^${escapeRegExp(base)}/#/usage(\\?|$)`), `back on the page asked for: ${page.url()}`);
      const nav = page.getByRole("navigation", { name: "Console" });
      const links = (await nav.getByRole("link").allInnerTexts()).map((text) => text.trim());
      assert.deepEqual(links.sort(), ["Statements", "Subscriptions", "Usage"], "a tenant's nav has Usage, Subscriptions and Statements only");
      const banner = page.getByRole("banner");
      await banner.getByText(subscription).first().waitFor();
      await banner.getByText(providerName).first().waitFor();
      await shoot(page, "sso-usage");
    });

    const cookie = await sessionCookie(context);
    await step("the session is a tenant's of the token's subscriptions, from the provider", async () => {
      const response = await fetch(`${base}/v1/session`, { headers: { cookie: `${cookie.name}=${cookie.value}` } });
      const text = await response.text();
      assert.equal(response.status, 200, `GET /v1/session with the cookie: ${text}`);
      const session = JSON.parse(text);
      assert.equal(session.role, "tenant", text);
      assert.deepEqual(session.subscriptions, [subscription], text);
      assert.equal(session.provider, providerName, text);
      assert.equal(session.subject, `${user}@${issuer}`, text);
    });

    await step("the usage explorer shows her subscription's usage, no other", async () => {
      await page.getByLabel("From", { exact: true }).fill(from);
      await page.getByLabel("To", { exact: true }).fill(to);
      await page.getByLabel("Group by").selectOption({ label: "Subscription" });
      await page.getByRole("button", { name: "Show" }).click();
      const table = page.getByRole("table", { name: /^Usage by/ });
      await table.waitFor();
      await table.getByText(subscription).first().waitFor();
      const html = await page.content();
      for (const other of others) assert.ok(!html.includes(other), `the page shows another subscription, ${other}`);
    });

    await step("signing out ends the session at tally and at the provider, back at sign-in", async () => {
      const { end_session_endpoint: endSession } = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
      assert.ok(endSession, "the provider has an end_session_endpoint (else there is no logout to test)");
      await guard.navigatingTo(issuerOrigin, async () => {
        await page.getByRole("button", { name: "Sign out" }).click();
        await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
      });
      assert.ok(
        guard.navigations.some((navigation) => navigation.startsWith(`GET ${endSession}`)),
        `the browser went through the provider's logout (${endSession}): ${JSON.stringify(guard.navigations)}`,
      );
      assert.equal(new URL(page.url()).origin, new URL(base).origin, `back on tally: ${page.url()}`);
      await assertSessionEnded(base, cookie);
      assert.ok(!(await hasSession()), "the browser holds no session cookie");
    });

    await step("the provider asks for a password again (its session ended too)", () =>
      guard.navigatingTo(issuerOrigin, async () => {
        await signInWith.click();
        await page.getByLabel("Password").waitFor();
        assert.ok(page.url().startsWith(`${issuer}/interaction/`), `the provider's login page: ${page.url()}`);
        assert.ok(!(await hasSession()), "nobody is signed in to tally");
      }),
    );

    await step("a forged callback is refused, and the sign-in page says why", async () => {
      await page.goto(`${base}/v1/session/callback?code=forged&state=forged`);
      await page.getByRole("heading", { name: "Sign in to tally" }).waitFor();
      const alert = page.getByRole("alert");
      await alert.waitFor();
      assert.ok((await alert.innerText()).trim().length > 0, "the refusal is in words");
      assert.equal(page.url(), `${base}/#/sign-in`, "the error is dropped from the address once shown");
      assert.ok(!(await hasSession()), "a forged callback signs nobody in");
    });

    await step("nothing the page received names another subscription", async () => guard.assertNeverReceived(others));
    await step("tally's pages made no request to another origin; no CSP violation or script error", async () => guard.check());
  } finally {
    await close();
  }
});

/**
 * Asserts the browser went to the provider's authorization endpoint with an
 * authorization-code request of tally's console client: PKCE S256, state,
 * nonce and tally's callback as the redirect URI.
 */
function assertAuthorizationRequest(navigations) {
  const request = navigations.map((line) => line.split(" ")[1]).find((url) => url.startsWith(`${issuer}/auth?`));
  assert.ok(request, `the browser went to ${issuer}/auth: ${JSON.stringify(navigations)}`);
  const params = new URL(request).searchParams;
  assert.equal(params.get("client_id"), clientId, request);
  assert.equal(params.get("response_type"), "code", request);
  assert.equal(params.get("redirect_uri"), `${base}/v1/session/callback`, request);
  assert.equal(params.get("code_challenge_method"), "S256", request);
  assert.match(params.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/, request);
  assert.ok(params.get("state"), `a state: ${request}`);
  assert.ok(params.get("nonce"), `a nonce: ${request}`);
  assert.ok((params.get("scope") ?? "").split(" ").includes("openid"), `scope openid: ${request}`);
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

