// The console's entry point: reads the session, draws the header and
// navigation for the signed-in role, and routes by hash (#/overview, …)
// to one page module per page. Tenants see only Usage, Subscriptions and
// Statements.

import { setUnauthorizedHandler } from "./api.js";
import { h, alert, loading, replace } from "./dom.js";
import { forget, isOperator, loadSession, session, signOut } from "./session.js";
import * as adapter from "./pages/adapter.js";
import * as adapters from "./pages/adapters.js";
import * as documents from "./pages/documents.js";
import * as meters from "./pages/meters.js";
import * as overview from "./pages/overview.js";
import * as run from "./pages/run.js";
import * as signInPage from "./pages/sign-in.js";
import * as statements from "./pages/statements.js";
import * as subscriptions from "./pages/subscriptions.js";
import * as tokens from "./pages/tokens.js";
import * as usage from "./pages/usage.js";

/** The pages in navigation order; `operator` pages are never named to a tenant. */
const PAGES = {
  overview: { nav: "Overview", module: overview, operator: true },
  usage: { nav: "Usage", module: usage },
  subscriptions: { nav: "Subscriptions", module: subscriptions },
  statements: { nav: "Statements", module: statements },
  meters: { nav: "Meters", module: meters, operator: true },
  adapters: { nav: "Adapters", module: adapters, operator: true },
  documents: { nav: "Documents", module: documents, operator: true },
  tokens: { nav: "Tokens", module: tokens, operator: true },
  adapter: { module: adapter, operator: true, navAs: "adapters" },
  run: { module: run, operator: true, navAs: "adapters" },
};

const main = document.getElementById("main");
let wanted = null; // the route asked for before signing in
let notice = null; // why the person is back at sign-in
let renders = 0;

/** The route's page key, its parameters and its query. */
function parseHash(hash = location.hash) {
  const [path, search = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(search);
  const [first, name, runs, id] = parts;
  if (parts.length === 0) return { key: null, parts, query };
  if (first === "adapters" && parts.length === 2) return { key: "adapter", params: { name }, query };
  if (first === "adapters" && parts.length === 4 && runs === "runs") return { key: "run", params: { name, id }, query };
  if (parts.length === 1 && (first === "sign-in" || (PAGES[first] && PAGES[first].nav))) return { key: first, params: {}, query };
  return { key: "not-found", params: {}, query };
}

function defaultRoute() {
  return isOperator() ? "#/overview" : "#/usage";
}

/** Draws the page the hash names. */
async function route() {
  const render = ++renders;
  const { key, params, query } = parseHash();
  if (!session()) {
    if (key && key !== "sign-in") wanted = location.hash;
    if (key !== "sign-in") {
      location.replace("#/sign-in");
      return;
    }
    drawHeader(null);
    // A refused single sign-on comes back as #/sign-in?error=…: shown once,
    // then dropped from the address (a reload should not show it again).
    const error = query.get("error");
    if (error) history.replaceState(null, "", "#/sign-in");
    signInPage.render(main, { done: afterSignIn, notice, error, wanted });
    notice = null;
    setTitle();
    return;
  }
  if (!key || key === "sign-in") {
    location.replace(defaultRoute());
    return;
  }
  drawHeader(key);
  const view = h("div", { class: "page" });
  replace(main, view);
  const page = PAGES[key];
  if (!page) {
    notFound(view);
  } else if (page.operator && !isOperator()) {
    notAvailable(view);
  } else {
    view.append(loading());
    try {
      await page.module.render(view, { params, query, session: session(), setQuery });
    } catch (error) {
      // A 401 has already sent the person to sign-in.
      if (render === renders && session()) replace(view, h("h1", { tabindex: -1 }, "Something went wrong"), alert(error));
    }
  }
  if (render !== renders) return;
  setTitle();
  if (document.activeElement === document.body || document.activeElement === null || !main.contains(document.activeElement)) {
    main.querySelector("h1")?.focus({ preventScroll: true });
  }
}

/** Rewrites the hash's query without drawing the page again (bookmarkable state). */
function setQuery(params) {
  const [path] = location.hash.split("?");
  const search = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value != null)).toString();
  history.replaceState(null, "", search ? `${path}?${search}` : path);
}

function setTitle() {
  const heading = main.querySelector("h1")?.textContent;
  document.title = heading ? `${heading} — tally` : "tally console";
}

function notAvailable(view) {
  replace(
    view,
    h("h1", { tabindex: -1 }, "Not available"),
    h("p", { role: "status", class: "notice" }, "This page is not available with your sign-in. You can see your usage, your subscriptions and their statements."),
    h("p", {}, h("a", { href: "#/usage" }, "Go to your usage")),
  );
}

function notFound(view) {
  replace(
    view,
    h("h1", { tabindex: -1 }, "Page not found"),
    h("p", { role: "status", class: "notice" }, "There is no such page in the console."),
    h("p", {}, h("a", { href: defaultRoute() }, "Go to the start page")),
  );
}

/** The header: navigation for the role, who is signed in, sign-out. */
function drawHeader(key) {
  const me = session();
  const topbar = document.getElementById("topbar");
  topbar.hidden = !me;
  if (!me) return;
  const active = PAGES[key]?.navAs ?? key;
  const links = Object.entries(PAGES)
    .filter(([, page]) => page.nav && (!page.operator || me.role === "operator"))
    .map(([name, page]) =>
      h("li", {}, h("a", { href: `#/${name}`, "aria-current": name === active ? "page" : null }, page.nav)),
    );
  replace(document.getElementById("nav-list"), links);
  const who =
    me.role === "operator"
      ? `Operator · ${me.subject ?? ""}`
      : `Tenant · ${(me.subscriptions ?? []).join(", ") || "no subscriptions"}`;
  // A single sign-on names the provider the person signed in with.
  const via = me.provider ? ` · via ${me.provider}` : "";
  const whoNode = document.getElementById("who");
  whoNode.textContent = `${who}${via}`;
  whoNode.title = `Signed in as ${who}${me.provider ? ` (${me.subject ?? ""}, ${me.provider})` : ""}. Session ends ${me.expiresAt ?? "after 8 hours"}.`;
}

function afterSignIn() {
  const asked = wanted && PAGES[parseHash(wanted).key];
  // A tenant who followed an operator's link lands on their own start page.
  const target = asked && (!asked.operator || isOperator()) ? wanted : defaultRoute();
  wanted = null;
  if (location.hash === target) route();
  else location.assign(target);
}

async function boot() {
  setUnauthorizedHandler(() => {
    if (!session()) return;
    forget();
    notice = "Your session has ended. Sign in again.";
    wanted = location.hash;
    location.replace("#/sign-in");
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    let logoutUrl = null;
    try {
      logoutUrl = await signOut();
    } finally {
      if (logoutUrl) {
        // A single sign-on session also ends at its provider, which sends
        // the browser back to the console's start page.
        location.assign(logoutUrl);
      } else {
        wanted = null;
        notice = "You are signed out.";
        location.assign("#/sign-in");
      }
    }
  });
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault(); // the hash is the router's
    main.focus();
  });
  window.addEventListener("hashchange", route);
  try {
    await loadSession();
  } catch (error) {
    replace(main, h("h1", { tabindex: -1 }, "tally console"), alert(error));
    return;
  }
  route();
}

boot();
