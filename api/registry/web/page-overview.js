// Overview: ledger size, checkpoint age, verification state, sites, running tasks, recent results.

import { age, badge, h } from "./dom.js";
import { authorName, taskState } from "./model.js";

const RECENT = 10;

function card(title, id, ...body) {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title), ...body);
}

export async function renderOverview(ctx) {
  const { data } = ctx;
  const cp = data.checkpoint;
  const [sites, tasks, tail] = await Promise.all([
    data.readModel("/v1/sites"),
    data.mode === "full" ? null : data.readModel("/v1/tasks?state=unfinished&limit=100"),
    data.tail(data.mode === "full" ? cp.size : 30),
  ]);
  const latest = tail[0];
  const name = (entry) => (data.model ? authorName(data.model, entry.event.author) : entry.event.author.slice(0, 12));

  const siteCounts = { online: 0, lagging: 0, offline: 0, never: 0 };
  let siteBody;
  if (sites) {
    for (const s of sites.sites) siteCounts[s.presence] = (siteCounts[s.presence] || 0) + 1;
    siteBody = h("ul", { class: "counts" },
      ...["online", "lagging", "offline", "never"].map((p) => h("li", {}, badge(p), ` ${siteCounts[p]}`)),
      h("li", {}, h("a", { href: "#/members" }, "all sites")));
  } else {
    siteBody = h("p", { class: "na" }, "Site presence: not available from this registry.");
  }

  let running;
  if (data.model) {
    running = data.model.order.map((id) => data.model.tasks.get(id)).filter((t) => taskState(t) === "running" || taskState(t) === "waiting");
  } else if (tasks) {
    running = tasks.tasks.filter((t) => !t.cancelled).reverse(); // newest first -> oldest first
    if (tasks.next !== null) running.more = true;
  }
  const runningBody = running
    ? h("div", {}, h("p", { class: "big", id: "tasks-running" }, `${running.length}${running.more ? "+" : ""}`),
        h("ul", {}, ...running.slice(-RECENT).reverse().map((t) => h("li", {}, h("a", { href: `#/task/${t.task}` }, t.label || t.image), " ", t.task.slice(0, 8)))))
    : h("p", { class: "na" }, "Running tasks: not available from this registry.");

  const results = tail.filter((e) => e.event.kind === "result").slice(0, RECENT);
  const resultsBody = results.length
    ? h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Entry"), h("th", {}, "Site"), h("th", {}, "State"), h("th", {}, "Task"), h("th", {}, "When"))),
        h("tbody", {}, ...results.map((e) => h("tr", {},
          h("td", {}, String(e.index)), h("td", {}, h("a", { href: `#/site/${encodeURIComponent(name(e))}` }, name(e))),
          h("td", {}, badge(e.event.body.state)),
          h("td", {}, h("a", { href: `#/task/${e.event.body.task}` }, e.event.body.task.slice(0, 12))),
          h("td", {}, age(e.received)))))))
    : h("p", {}, "No results yet.");

  return h("div", { class: "grid", id: "overview" },
    card("Ledger", "ledger-size",
      h("p", { class: "big", id: "size" }, String(cp.size)), h("p", {}, "entries, all proven in the verified checkpoint")),
    card("Last checkpoint", "checkpoint-age",
      h("p", {}, latest ? `Newest entry ${latest.index}, received ${age(latest.received)}` : "empty ledger"),
      h("p", {}, `Checkpoint fetched and verified ${new Date().toLocaleTimeString()}`)),
    card("Verification", "verification",
      data.model && data.model.entries.some((e) => e.event.kind === "witness_policy")
        ? h("p", { class: "na", id: "witness-note" }, "This ledger sets a witness policy; this page checks the log's own signature, not the witnesses' cosignatures: use `pht audit` for those.")
        : "",
      h("p", {}, badge("verified"), " signed by the pinned log key"),
      h("p", {}, badge("verified"), " consistent with the last checkpoint this browser saw"),
      h("p", {}, badge("verified"), data.mode === "full" ? ` all ${cp.size} entries hash to its root; every event signature checked` : " every entry shown proven included"),
      data.mode === "full" ? "" : data.signaturesChecked
        ? h("p", {}, badge("verified"), " each shown entry's signature checked with its author's key from a proven member entry")
        : h("p", { class: "na", id: "signatures-unchecked" }, "Signatures of the entries shown: not checked (this registry does not list its members).")),
    card("Sites", "sites", siteBody),
    card("Tasks open (running or waiting)", "running", runningBody),
    card("Recent results", "results", resultsBody));
}
