// The web view's shell: sign-in with the member's key file, the first-visit pin, the red banner,
// the router and the live long-poll. Pages are in page-*.js; all data comes through data.js.

import { Data } from "./data.js";
import { download, h } from "./dom.js";
import { ed25519Available, forgetKey, importKeyFile, loadKey, saveKey } from "./keys.js";
import { Registry } from "./registry.js";
import { Trust, TrustFailure, candidatePins, forgetPins, loadPins, savePins } from "./trust.js";
import { renderOverview } from "./page-overview.js";
import { renderLedger } from "./page-ledger.js";
import { renderTask } from "./page-task.js";
import { renderSite } from "./page-site.js";
import { renderMembers } from "./page-members.js";
import { identityPanel } from "./identity.js";

const main = document.getElementById("main");
const status = document.getElementById("status");
const nav = document.getElementById("nav");
const KEY_SLOT = "signing-key";

const ctx = { signer: null, registry: null, trust: null, data: null, failed: false, route: null, live: null };
window.__pht = ctx; // for the bench and the tests: read-only inspection of timings and state
ctx.timings = {};

function show(...children) {
  main.replaceChildren(...children);
}

function setStatus(text, state) {
  status.replaceChildren(h("span", { class: `badge s-${state}` }, state === "ok" ? "verified" : state), " ", text);
}

/** A failed check: the red banner, both checkpoints for download, and nothing else. */
export function fail(error) {
  ctx.failed = true;
  if (ctx.live) ctx.live.abort();
  nav.hidden = true;
  const what = error instanceof TrustFailure ? error.what : "verification";
  const detail = error instanceof TrustFailure ? error.detail : String(error && error.message || error);
  const banner = h("div", { class: "banner", role: "alert", id: "banner" },
    h("h2", {}, `Verification failed: ${what}`),
    h("p", {}, detail),
    h("p", {}, "Nothing from this registry's answer is shown. Keep the checkpoints below as evidence and tell the consortium's administrators."),
  );
  const links = h("p", { class: "evidence" });
  if (error.previous) {
    links.append(h("button", { type: "button", id: "evidence-previous", onclick: () => download("checkpoint-last-verified.txt", error.previous, "text/plain") }, "Download the last verified checkpoint"), " ");
  }
  if (error.served) {
    links.append(h("button", { type: "button", id: "evidence-served", onclick: () => download("checkpoint-served.txt", error.served, "text/plain") }, "Download the checkpoint served now"));
  }
  banner.append(links);
  banner.append(h("p", {}, h("button", { type: "button", id: "forget-pins", onclick: () => { forgetPins(); location.reload(); } }, "Forget this registry's pins (only if the administrators say so)")));
  status.replaceChildren(h("span", { class: "badge s-failed" }, "FAILED"), ` ${what}`);
  show(banner);
}

async function start() {
  if (!window.isSecureContext || !crypto.subtle || !(await ed25519Available())) {
    status.replaceChildren(h("span", { class: "badge s-failed" }, "unsupported"), " nothing verified");
    show(h("div", { class: "banner", role: "alert", id: "unsupported" },
      h("h2", {}, "This browser cannot verify the registry"),
      h("p", {}, "It lacks Ed25519 in WebCrypto, which the page needs to check the registry's signatures. The page verifies nothing and shows nothing rather than pretend. Use a current Chromium or Firefox, or `pht audit`.")));
    return;
  }
  const stored = await loadKey(KEY_SLOT).catch(() => null);
  if (stored) return signedIn(stored);
  signInForm();
}

function signInForm(error) {
  setStatus("not signed in", "waiting");
  nav.hidden = true;
  const file = h("input", { type: "file", id: "key-file", accept: ".key,.pem,text/plain" });
  const remember = h("input", { type: "checkbox", id: "remember" });
  const message = h("p", { class: "error", role: "alert", id: "sign-in-error" }, error || "");
  const form = h("form", { id: "sign-in", class: "panel", onsubmit: async (ev) => {
    ev.preventDefault();
    message.textContent = "";
    const chosen = file.files && file.files[0];
    if (!chosen) { message.textContent = "Choose your signing key file (NAME.key) first."; return; }
    try {
      const key = await importKeyFile(await chosen.text());
      const signer = { key: key.key, keyId: key.keyId, publicRaw: key.publicRaw, file: chosen.name };
      if (remember.checked) await saveKey(KEY_SLOT, signer);
      await signedIn(signer);
    } catch (e) {
      message.textContent = e.message;
    }
  } },
  h("h2", {}, "Sign in with your key"),
  h("p", {}, "Pick your member signing key file (NAME.key, as written by `pht keys new`). It is imported into this browser as a key that cannot be read back, signs each request, and never leaves the browser."),
  h("label", { for: "key-file" }, "Signing key file "), file,
  h("p", {}, remember, h("label", { for: "remember" }, " Keep the key in this browser (IndexedDB, not extractable)")),
  h("button", { type: "submit", id: "sign-in-button" }, "Sign in"),
  message);
  show(form);
}

async function signedIn(signer) {
  ctx.signer = signer;
  ctx.registry = new Registry(signer);
  ctx.timings.signedIn = performance.now();
  let pins = loadPins();
  if (!pins) {
    try {
      pins = await candidatePins(ctx.registry);
    } catch (e) {
      if (e.status === 401) return signInForm(`The registry does not know this key (${e.message}).`);
      return fail(e);
    }
    return confirmPins(pins);
  }
  return verified(pins);
}

function confirmPins(pins) {
  setStatus("first visit: confirm the registry", "waiting");
  show(h("section", { class: "panel", id: "confirm-pins" },
    h("h2", {}, "First visit: is this your consortium's registry?"),
    h("p", {}, "Compare these with what your administrator gave you. Once trusted, this browser checks every checkpoint against this key and keeps it."),
    h("dl", {},
      h("dt", {}, "Consortium"), h("dd", { id: "pin-consortium" }, pins.consortium),
      h("dt", {}, "Log origin"), h("dd", {}, pins.origin),
      h("dt", {}, "Log key"), h("dd", { class: "mono", id: "pin-log-key" }, pins.logKey),
      h("dt", {}, "Log key fingerprint (SHA-256)"), h("dd", { class: "mono", id: "pin-fingerprint" }, pins.fingerprint),
      h("dt", {}, "Genesis hash"), h("dd", { class: "mono", id: "pin-genesis" }, pins.genesis)),
    h("button", { type: "button", id: "trust-registry", onclick: () => { savePins(pins); verified(pins); } }, "Trust this registry"),
    " ",
    h("button", { type: "button", onclick: () => signOut() }, "Cancel")));
}

async function signOut() {
  if (ctx.live) ctx.live.abort();
  await forgetKey(KEY_SLOT).catch(() => null);
  location.hash = "";
  location.reload();
}

async function verified(pins) {
  ctx.trust = new Trust(ctx.registry, pins);
  ctx.data = new Data(ctx.trust, ctx.registry);
  setStatus("verifying…", "waiting");
  try {
    await ctx.data.load();
  } catch (e) {
    return fail(e);
  }
  let members = ctx.data.model ? [...ctx.data.model.members.values()] : null;
  if (!members) {
    const answer = await ctx.data.readModel("/v1/members").catch(() => null);
    members = answer ? answer.members : [];
  }
  const me = members.find((m) => m.key_id === ctx.signer.keyId) || null;
  document.getElementById("who").replaceChildren(
    `Signed in as ${me ? `${me.name} (${me.role})` : `key ${ctx.signer.keyId.slice(0, 12)}`} `,
    h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"));
  ctx.me = me;
  nav.hidden = false;
  window.addEventListener("hashchange", route);
  await route();
  live();
}

function statusLine() {
  const cp = ctx.data.checkpoint;
  setStatus(`checkpoint of ${cp.size} entries, signed by the pinned log key, consistent with every one this browser saw; verified ${new Date().toLocaleTimeString()}`, "ok");
}

async function route(event) {
  if (ctx.failed) return;
  const navigated = event instanceof HashChangeEvent;
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  ctx.route = parts[0] || "overview";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === ctx.route) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const pages = {
    overview: () => renderOverview(ctx),
    ledger: () => renderLedger(ctx, params),
    task: () => renderTask(ctx, parts[1]),
    site: () => renderSite(ctx, parts[1]),
    members: () => renderMembers(ctx),
    keys: () => identityPanel(ctx),
  };
  const render = pages[ctx.route] || pages.overview;
  try {
    const page = await render();
    if (ctx.failed) return;
    statusLine();
    show(page);
    if (navigated) main.focus({ preventScroll: true }); // keyboard users land on the new page
    ctx.timings.rendered = performance.now();
    document.body.dataset.page = ctx.route;
    document.body.dataset.size = String(ctx.data.checkpoint.size);
  } catch (e) {
    if (e instanceof TrustFailure) return fail(e);
    show(h("p", { class: "error", role: "alert" }, `Could not load this page: ${e.message}`));
  }
}

/** Long-poll for new entries; verify them; re-render the pages that show live data. */
async function live() {
  while (!ctx.failed) {
    ctx.live = new AbortController();
    try {
      const size = ctx.data.checkpoint.size;
      const asked = performance.now();
      const page = await ctx.registry.page(size, 100, 25, ctx.live.signal);
      if (!page.records.length) {
        // An empty answer at once means the registry had no long-poll slot free (it says
        // Retry-After: 1): wait rather than ask again at once.
        if (performance.now() - asked < 1000) await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      ctx.timings.polled = performance.now();
      const added = await ctx.data.update({ from: size, records: page.records });
      if (!added.length && ctx.data.checkpoint.size === size) {
        await new Promise((r) => setTimeout(r, 20)); // the checkpoint lags the entry: ask again
        continue;
      }
      if (["overview", "task", "site", "members"].includes(ctx.route)) await route();
      else statusLine();
      ctx.timings.updated = performance.now();
    } catch (e) {
      if (e instanceof TrustFailure) return fail(e);
      if (e.name === "AbortError") return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

start();
