// Ledger: entries, newest first, paged, filterable by kind, author, site and task; each entry's
// raw signed JSON (its exact stored text) on demand.

import { age, h } from "./dom.js";
import { authorName } from "./model.js";

const PER_PAGE = 50;
const KINDS = ["", "consortium", "member", "task", "cancel", "status", "result", "transfer", "review_policy", "submission", "review", "witness_policy"];

function summary(entry, model) {
  const b = entry.event.body || {};
  switch (entry.event.kind) {
    case "consortium": return `genesis of ${b.name} (${(b.members || []).length} members)`;
    case "member": return `${b.action} ${b.name} (${b.role})`;
    case "task": return `${b.image} for ${(b.sites || []).join(", ")}${b.label ? ` [${b.label}]` : ""}`;
    case "status": case "result": return `${b.state} for task ${String(b.task).slice(0, 12)}${b.reason ? `: ${b.reason}` : ""}`;
    case "cancel": return `cancel task ${String(b.task).slice(0, 12)}`;
    default: return entry.event.kind;
  }
}

function matches(entry, filter, model) {
  const b = entry.event.body || {};
  const author = model ? authorName(model, entry.event.author) : entry.event.author;
  if (filter.kind && entry.event.kind !== filter.kind) return false;
  if (filter.author && author !== filter.author && !entry.event.author.startsWith(filter.author)) return false;
  if (filter.task && !(entry.id.startsWith(filter.task) || String(b.task || "").startsWith(filter.task))) return false;
  if (filter.site) {
    const names = [...(b.sites || []), ...(["status", "result", "transfer"].includes(entry.event.kind) ? [author] : [])];
    if (!names.includes(filter.site)) return false;
  }
  return true;
}

export async function renderLedger(ctx, params) {
  const { data } = ctx;
  const model = data.model;
  const size = data.checkpoint.size;
  const filter = Object.fromEntries(["kind", "author", "site", "task"].map((k) => [k, params.get(k) || ""]));
  const pageNo = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  let rows;
  let total;
  let note = null;
  if (model) {
    const all = model.entries.slice(0, size).filter((e) => matches(e, filter, model)).reverse();
    total = all.length;
    rows = all.slice(pageNo * PER_PAGE, (pageNo + 1) * PER_PAGE);
  } else {
    const end = size - pageNo * PER_PAGE;
    rows = (await data.range(Math.max(0, end - PER_PAGE), Math.min(PER_PAGE, end))).reverse().filter((e) => matches(e, filter, null));
    total = size;
    if (Object.values(filter).some(Boolean)) note = "This ledger is too large to read whole here: the filter applies to the page shown.";
  }
  const field = (name, label, control) => h("p", {}, h("label", { for: `f-${name}` }, label), " ", control);
  const input = (name) => h("input", { id: `f-${name}`, name, value: filter[name], size: 14 });
  const select = h("select", { id: "f-kind", name: "kind" }, ...KINDS.map((k) => h("option", { value: k, selected: k === filter.kind }, k || "any")));
  const form = h("form", { class: "filters", id: "ledger-filter", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const el of ev.target.elements) if (el.name && el.value) q.set(el.name, el.value);
    location.hash = `#/ledger?${q}`;
  } },
  field("kind", "Kind", select), field("author", "Author", input("author")), field("site", "Site", input("site")), field("task", "Task", input("task")),
  h("button", { type: "submit" }, "Filter"));
  const table = h("table", { id: "entries" },
    h("thead", {}, h("tr", {}, ...["Index", "Kind", "Author", "Received", "What", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...rows.map((e) => {
      const author = model ? authorName(model, e.event.author) : e.event.author.slice(0, 12);
      const raw = h("details", {}, h("summary", {}, "Raw signed JSON"), h("pre", { class: "raw" }, e.text));
      const link = e.event.kind === "task" ? h("a", { href: `#/task/${e.id}` }, summary(e, model)) : summary(e, model);
      return h("tr", { "data-index": e.index }, h("td", {}, String(e.index)), h("td", {}, e.event.kind), h("td", {}, author), h("td", {}, age(e.received)), h("td", {}, link), h("td", {}, raw));
    })));
  const q = (page) => { const p = new URLSearchParams(params); p.set("page", String(page)); return `#/ledger?${p}`; };
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  const pager = h("nav", { class: "pager", "aria-label": "pages" },
    pageNo > 0 ? h("a", { href: q(pageNo - 1), class: "newer" }, "← newer") : "",
    ` page ${pageNo + 1} of ${pages} (${total} entries) `,
    pageNo + 1 < pages ? h("a", { href: q(pageNo + 1), class: "older" }, "older →") : "");
  return h("div", { id: "ledger" }, h("h1", {}, "Ledger"), form, note && h("p", { class: "na" }, note), pager, h("div", { class: "scroll" }, table), pager.cloneNode(true));
}
