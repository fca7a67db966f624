// The engineers' Integrations page: plain JS, no build step. Data comes from /b2b/api/v1/overview with
// the Airflow UI's own session cookie (same origin); every value is put in the page as text, never HTML.
"use strict";

const PAGE_SIZE = 50;
const root = location.pathname.split("/b2b/ui/integrations")[0];
const api = root + "/b2b/api/v1";
const airflow = {
  dag: (dag) => `${root}/dags/${encodeURIComponent(dag)}`,
  run: (dag, run) => `${airflow.dag(dag)}/runs/${encodeURIComponent(run)}`,
  log: (dag, run, task) => `${airflow.run(dag, run)}/tasks/${encodeURIComponent(task)}`,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Links into Airflow's own pages open in the whole window, not inside the iframe the UI shows us in.
const out = (href, content, label) => el("a", { href, target: "_top", "aria-label": label, onclick: toAirflow }, content);

// Airflow's UI sandboxes its plugin iframe without allow-top-navigation, so target="_top" is refused
// there. The frame is same-origin, so the link is handed to the UI's own router instead: a history
// entry in the top window and the popstate its router listens to (no reload; Back returns here).
function toAirflow(event) {
  if (window.top === window || event.ctrlKey || event.metaKey || event.shiftKey || event.button) return;
  try {
    const top = window.top;
    top.history.pushState(null, "", event.currentTarget.href);
    top.dispatchEvent(new top.PopStateEvent("popstate", { state: null }));
    event.preventDefault();
  } catch (e) {
    // Another origin: leave the link to the browser.
  }
}

function healthBadge(word) {
  return el("span", { class: `health h-${word.replace(/ /g, "-")}`, text: word });
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return el("time", { datetime: iso, title: iso, text: date.toLocaleString() });
}

function count(value) {
  return value === null || value === undefined ? "n/a" : String(value);
}

async function call(path, options) {
  const response = await fetch(api + path, {
    credentials: "same-origin",
    ...options,
    headers: { Accept: "application/json", "X-B2B-Page": "1", ...((options || {}).headers || {}) },
  });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = (body && (body.detail || body.error)) || response.statusText;
    const error = new Error(response.status === 401 ? `${detail} (log in to Airflow and reload)` : detail);
    error.status = response.status;
    throw error;
  }
  return body;
}

// ---- overview ---------------------------------------------------------------------------------------
const state = { offset: 0, filled: false };

function params() {
  const form = document.getElementById("filters");
  const query = new URLSearchParams();
  for (const name of ["customer", "integration", "pattern", "health", "q"]) {
    const value = form.elements[name].value.trim();
    if (value) query.set(name, value);
  }
  return query;
}

function fillFilters(filters) {
  if (state.filled) return;
  state.filled = true;
  const choices = { customer: filters.customers, integration: filters.integrations, pattern: filters.patterns, health: filters.health };
  const wanted = new URLSearchParams(location.search);
  for (const [name, values] of Object.entries(choices)) {
    const select = document.getElementById(`f-${name}`);
    for (const value of values) select.append(el("option", { value, text: value }));
    if (wanted.get(name)) select.value = wanted.get(name);
  }
}

function row(item) {
  const failure = item.last_failure;
  const failureCell = el("td", {});
  if (failure) {
    failureCell.append(when(failure.at), " ", el("span", { class: "reason", text: failure.reason || "" }));
    if (failure.task_id) {
      failureCell.append(out(airflow.log(failure.dag_id, failure.run_id, failure.task_id), `log of ${failure.task_id}`,
        `Log of the failed step ${failure.task_id} of ${item.customer} ${item.integration}`));
    } else {
      failureCell.append(out(airflow.run(failure.dag_id, failure.run_id), "failed run", null));
    }
  } else failureCell.append("—");
  const links = el("td", {});
  for (const flow of item.flows) {
    links.append(out(airflow.dag(flow.dag_id), flow.flow, `DAG of flow ${flow.flow} of ${item.customer} ${item.integration}`), " ");
  }
  const customerLink = el("a", { href: `?show=${encodeURIComponent(item.customer)}`, text: item.customer_name });
  const health = el("td", {}, healthBadge(item.health));
  if (item.reasons && item.reasons.length) health.append(el("span", { class: "reason", text: item.reasons.join("; ") }));
  const success = item.last_success;
  const counts = item.counts;
  return el("tr", {},
    el("th", { scope: "row" }, customerLink, el("span", { class: "reason", text: item.customer })),
    el("td", { text: item.integration }), health,
    el("td", {}, success ? out(airflow.run(success.dag_id, success.run_id), when(success.at),
      `Last successful run of ${item.customer} ${item.integration}`) : "—"),
    failureCell,
    el("td", {}, item.next_run ? when(item.next_run.at) : "—"),
    el("td", { class: "num", text: count(counts.rows_loaded_24h) }),
    el("td", { class: "num", text: count((counts.quarantined_records_24h || 0) + (counts.quarantined_messages || 0) + (counts.failed_files || 0)) }),
    el("td", { class: "num", text: count(counts.dead_letters) }),
    el("td", { class: "num", text: count(counts.pending_deliveries) }),
    links);
}

async function loadOverview() {
  const status = document.getElementById("status");
  const query = params();
  query.set("limit", PAGE_SIZE);
  query.set("offset", state.offset);
  status.textContent = "Loading…";
  let data;
  try {
    data = await call(`/overview?${query}`);
  } catch (error) {
    status.textContent = `Could not load the integrations: ${error.message}`;
    status.className = "error";
    return;
  }
  status.className = "";
  fillFilters(data.filters);
  const tbody = document.querySelector("#grid tbody");
  tbody.replaceChildren(...data.items.map(row));
  if (!data.items.length) tbody.append(el("tr", {}, el("td", { colspan: 11, text: "No integration matches these filters." })));
  const summary = document.getElementById("summary");
  summary.replaceChildren();
  for (const [word, n] of Object.entries(data.by_health)) {
    if (!n) continue;
    summary.append(el("button", { type: "button", "aria-label": `Show the ${n} ${word}`, onclick: () => {
      document.getElementById("f-health").value = word; state.offset = 0; apply();
    } }, healthBadge(word), ` ${n}`));
  }
  const last = Math.min(data.offset + data.items.length, data.total);
  document.getElementById("page-info").textContent = data.total ? `${data.offset + 1}–${last} of ${data.total}` : "0 of 0";
  document.getElementById("prev").disabled = data.offset === 0;
  document.getElementById("next").disabled = last >= data.total;
  status.textContent = `${data.total} integration${data.total === 1 ? "" : "s"} shown` +
    (data.unreachable.length ? `; counts missing: ${data.unreachable.join("; ")}` : "");
}

function apply() {
  const query = params();
  history.replaceState(null, "", query.toString() ? `?${query}` : location.pathname);  // a reload keeps the filters
  loadOverview();
}

function startOverview() {
  document.getElementById("overview").hidden = false;
  const form = document.getElementById("filters");
  form.addEventListener("submit", (event) => { event.preventDefault(); state.offset = 0; apply(); });
  form.addEventListener("reset", () => setTimeout(() => { state.offset = 0; apply(); }));
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => { state.offset = 0; apply(); });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadOverview(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadOverview(); });
  const wanted = new URLSearchParams(location.search);
  if (wanted.get("q")) document.getElementById("f-q").value = wanted.get("q");
  // The selects are filled from the first answer; it must already honour the URL's filters.
  for (const name of ["customer", "integration", "pattern", "health"]) {
    if (wanted.get(name)) document.getElementById(`f-${name}`).append(el("option", { value: wanted.get(name), text: wanted.get(name), selected: true }));
  }
  loadOverview();
}

// ---- customer page ----------------------------------------------------------------------------------
function table(caption, headers, rows) {
  return el("table", {}, el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows));
}

function deadLettersDone(flow) {
  const sum = (key) => flow.dead_letters.reduce((total, r) => total + r[key], 0);
  const parts = [`${sum("delivered")} delivered`];
  if (sum("already_delivered")) parts.push(`${sum("already_delivered")} already delivered`);
  if (sum("superseded")) parts.push(`${sum("superseded")} superseded by a newer event`);
  if (sum("dead_lettered")) parts.push(`${sum("dead_lettered")} failed again`);
  return `dead letters of ${flow.flow}: ${parts.join(", ")}`;
}

async function replay(customer, integration, body, statusNode) {
  statusNode.textContent = "Replaying…";
  try {
    const answer = await call(`/customers/${encodeURIComponent(customer)}/instances/${encodeURIComponent(integration)}/replay`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const done = answer.flows.map((f) => [
      ...(f.quarantined || []).map((q) => `${q.message_id}: ${q.outcome}`),
      ...(f.dead_letters !== undefined ? [deadLettersDone(f)] : []),
    ]).flat();
    statusNode.textContent = `Replayed. ${done.join("; ") || "Nothing was waiting."}`;
  } catch (error) {
    statusNode.textContent = `Replay failed: ${error.message}`;
  }
}

async function timeline(customer, integration, flow, list) {
  try {
    const data = await call(`/customers/${encodeURIComponent(customer)}/instances/${encodeURIComponent(integration)}/flows/${encodeURIComponent(flow.flow)}/runs?limit=20`);
    if (!data.runs.length) { list.replaceChildren(el("li", { text: "no runs yet" })); return; }
    // Oldest first, left to right, like a timeline.
    list.replaceChildren(...data.runs.slice().reverse().map((run) => el("li", {},
      out(run.failed_step ? airflow.log(flow.dag_id, run.run_id, run.failed_step) : airflow.run(flow.dag_id, run.run_id),
        `${run.state} ${new Date(run.run_after).toLocaleString()}`,
        `${run.state} run of ${run.run_after}${run.failed_step ? `, failed at ${run.failed_step}: open its log` : ""}`))));
    list.querySelectorAll("a").forEach((a, i) => a.classList.add(`s-${data.runs[data.runs.length - 1 - i].state}`));
  } catch (error) {
    list.replaceChildren(el("li", { class: "error", text: `runs could not be read: ${error.message}` }));
  }
}

function instanceSection(customer, item) {
  const id = `i-${item.integration}`;
  const section = el("section", { class: "instance", "aria-labelledby": id });
  const status = el("p", { role: "status", "aria-live": "polite" });
  section.append(el("h2", { id }, `${item.integration} `, healthBadge(item.health)));
  if (item.reasons.length) section.append(el("p", { class: "reason", text: item.reasons.join("; ") }));

  section.append(el("h3", { text: "URLs its third parties call" }));
  if (item.endpoints.length) {
    section.append(el("ul", {}, ...item.endpoints.map((e) => el("li", {}, `${e.kind} flow ${e.flow}: ${e.method} `,
      el("code", { text: location.origin + root + e.path })))));
  } else section.append(el("p", { text: "None: no webhook or synchronous flow." }));

  section.append(el("h3", { text: "Config problems" }));
  if (item.config_problems.length) {
    section.append(table("Config problems (file, line, key path)", ["File", "Line", "Key path", "Problem"],
      item.config_problems.map((p) => el("tr", {}, el("td", { text: p.file }), el("td", { text: p.line ?? "" }),
        el("td", {}, el("code", { text: p.key_path })), el("td", { text: p.message })))));
  } else section.append(el("p", { text: "None." }));

  section.append(el("h3", { text: "Flows and run history" }));
  for (const flow of item.flows) {
    const list = el("ol", { class: "timeline", "aria-label": `Last runs of flow ${flow.flow}, oldest first` });
    const counts = Object.entries(flow.counts).map(([k, v]) => `${k.replace(/_/g, " ")}: ${count(v)}`).join(", ");
    section.append(el("h4", {}, out(airflow.dag(flow.dag_id), `${flow.flow}`, `DAG of flow ${flow.flow}`),
      flow.is_paused ? " (paused)" : ""), el("p", { class: "reason", text: counts }), list);
    timeline(customer, item.integration, flow, list);
    if (flow.counts.dead_letters) {
      section.append(el("button", { type: "button", onclick: () => replay(customer, item.integration,
        { flow: flow.flow, quarantined: false, dead_letters: true }, status) }, `Replay ${flow.counts.dead_letters} dead letters of ${flow.flow}`));
    }
  }

  section.append(el("h3", { text: "Quarantine" }));
  if (item.quarantined.length) {
    section.append(table("Quarantined messages", ["Flow", "Message", "Quarantined at", "Why", "Action"],
      item.quarantined.map((q) => el("tr", {}, el("td", { text: q.flow }), el("td", {}, el("code", { text: q.message_id })),
        el("td", {}, when(q.quarantined_at)), el("td", { text: q.reasons }),
        el("td", {}, el("button", { type: "button", "aria-label": `Replay message ${q.message_id}`, onclick: () =>
          replay(customer, item.integration, { flow: q.flow, dead_letters: false, message_ids: [q.message_id] }, status) }, "Replay"))))));
  } else section.append(el("p", { text: "Nothing quarantined." }));

  section.append(el("h3", { text: "Dead letters" }));
  const letters = item.dead_letters.filter((d) => d.event_id);
  for (const d of item.dead_letters.filter((d) => d.unreadable)) {
    section.append(el("p", { class: "error", text: `Flow ${d.flow}: ${d.unreadable}` }));
  }
  if (letters.length) {
    section.append(table("Dead letters (events whose delivery ran out of retries), oldest first",
      ["Flow", "Target", "Event", "Occurred at", "Attempts", "Last error", "Action"],
      letters.map((d) => el("tr", {}, el("td", { text: d.flow }), el("td", { text: d.target }),
        el("td", {}, el("code", { text: d.event_id })), el("td", {}, when(d.occurred_at)), el("td", { class: "num", text: d.attempts }),
        el("td", { text: d.last_error }),
        el("td", {}, el("button", { type: "button", "aria-label": `Replay event ${d.event_id}`, onclick: () =>
          replay(customer, item.integration, { flow: d.flow, quarantined: false, event_ids: [d.event_id] }, status) }, "Replay"))))));
  } else if (!item.dead_letters.length) section.append(el("p", { text: "No dead letters." }));
  section.append(status);

  section.append(el("h3", { text: "Configuration (secrets masked)" }), el("pre", { text: JSON.stringify(item.settings, null, 2) }));
  return section;
}

async function startCustomer(customer) {
  document.getElementById("customer").hidden = false;
  const status = document.getElementById("customer-status");
  status.textContent = "Loading…";
  try {
    const data = await call(`/overview/customers/${encodeURIComponent(customer)}`);
    document.getElementById("customer-title").textContent = `${data.name} (${data.customer})`;
    document.title = `${data.name} · Integrations`;
    document.getElementById("instances").replaceChildren(...data.instances.map((i) => instanceSection(customer, i)));
    status.textContent = `${data.instances.length} integration${data.instances.length === 1 ? "" : "s"}`;
  } catch (error) {
    status.textContent = `Could not load customer ${customer}: ${error.message}`;
    status.className = "error";
  }
}

// ?show=<customer> is the customer page; any other query is the overview's filters.
const shown = new URLSearchParams(location.search).get("show");
if (shown) startCustomer(shown);
else startOverview();
