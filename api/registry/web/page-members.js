// Members: roles, organizations, keys and revocations (from the verified ledger), plus the sites'
// presence when the registry reports it.

import { badge, h } from "./dom.js";

export async function renderMembers(ctx) {
  const model = ctx.data.model;
  let members;
  let note = null;
  if (model) {
    members = [...model.members.values()];
  } else {
    const answer = await ctx.data.readModel("/v1/members");
    if (!answer) return h("div", { id: "members" }, h("h1", {}, "Members"), h("p", { class: "na" }, "Members: not available from this registry for a ledger this large."));
    members = answer.members;
    note = "From the registry's read model; each member's latest entry is proven below.";
    for (const m of members) await ctx.data.entry(m.index);
  }
  const roles = ["admin", "researcher", "site", "auditor", "reviewer"];
  members.sort((a, b) => roles.indexOf(a.role) - roles.indexOf(b.role) || a.name.localeCompare(b.name));
  return h("div", { id: "members" }, h("h1", {}, "Members"), note && h("p", { class: "na" }, note),
    h("div", { class: "scroll" }, h("table", { id: "member-table" },
      h("thead", {}, h("tr", {}, ...["Name", "Role", "Organization", "Key id", "Encryption key", "Status"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...members.map((m) => h("tr", { "data-member": m.name },
        h("td", {}, m.role === "site" ? h("a", { href: `#/site/${encodeURIComponent(m.name)}` }, m.name) : m.name),
        h("td", {}, m.role), h("td", {}, m.organization || "—"),
        h("td", {}, h("details", {}, h("summary", { class: "mono" }, String(m.key_id || "").slice(0, 16)), h("p", { class: "mono" }, `public key ${m.public_key}`))),
        h("td", { class: "mono" }, m.encryption_key ? `${m.encryption_key.slice(0, 16)}…` : "—"),
        h("td", {}, m.revoked !== null && m.revoked !== undefined ? h("span", {}, badge("revoked"), ` at entry ${m.revoked}`) : badge("active"))))))));
}
