// Site: presence (from the registry's heartbeats, when it has them), recent runs, rejections with
// their reasons, and the image digests the site ran (from its signed results).

import { age, badge, h } from "./dom.js";

export async function renderSite(ctx, name) {
  const model = ctx.data.model;
  const sites = await ctx.data.readModel("/v1/sites");
  const presence = sites ? sites.sites.find((s) => s.site === name) : null;
  const presenceBody = !sites
    ? h("p", { class: "na" }, "Presence: not available from this registry.")
    : presence
      ? h("p", { id: "presence" }, badge(presence.presence), presence.last_seen ? ` last seen ${age(presence.last_seen)}` : " never seen",
          presence.behind !== null && presence.behind !== undefined ? `, ${presence.behind} entries behind` : "",
          presence.running !== null && presence.running !== undefined ? `, ${presence.running} running` : "")
      : h("p", {}, "This registry reports no presence for this site.");
  if (!model) {
    return h("div", { id: "site" }, h("h1", {}, `Site ${name}`), presenceBody,
      h("p", { class: "na" }, "Runs, rejections and digests: this ledger is too large to read whole here; see `pht audit`."));
  }
  const member = model.members.get(name);
  const runs = [];
  for (const id of model.order) {
    const task = model.tasks.get(id);
    const site = task.sites[name];
    if (site) runs.push({ task, site });
  }
  const rejections = runs.filter((r) => r.site.state === "rejected");
  const digests = new Map();
  for (const r of runs) {
    const d = r.site.result && r.site.result.event.body.image_digest;
    if (d) digests.set(d, (digests.get(d) || 0) + 1);
  }
  return h("div", { id: "site", "data-site": name },
    h("h1", {}, `Site ${name}`),
    member ? h("p", {}, `${member.organization ? `Organization ${member.organization}. ` : ""}Member since entry ${member.added}`, member.revoked !== null ? h("span", {}, " ", badge("revoked"), ` at entry ${member.revoked}`) : "") : h("p", { class: "error" }, "Not a member of this consortium."),
    presenceBody,
    h("h2", {}, "Recent runs"),
    runs.length ? h("table", { id: "runs" }, h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", {}, "Image"), h("th", {}, "State"), h("th", {}, "Entry"))),
      h("tbody", {}, ...runs.slice(-20).reverse().map((r) => h("tr", {},
        h("td", {}, h("a", { href: `#/task/${r.task.task}` }, r.task.label || r.task.task.slice(0, 12))),
        h("td", { class: "mono" }, r.task.image), h("td", {}, badge(r.site.state)), h("td", {}, r.site.index ?? "—")))))
      : h("p", {}, "No tasks for this site yet."),
    h("h2", {}, "Rejections"),
    rejections.length ? h("ul", { id: "rejections" }, ...rejections.map((r) => h("li", {}, h("a", { href: `#/task/${r.task.task}` }, r.task.image), `: ${r.site.reason || "no reason given"}`)))
      : h("p", {}, "None."),
    h("h2", {}, "Image digests run"),
    digests.size ? h("ul", { id: "digests" }, ...[...digests].map(([d, n]) => h("li", {}, h("span", { class: "mono" }, d), ` (${n} run${n === 1 ? "" : "s"})`)))
      : h("p", {}, "None yet."));
}
