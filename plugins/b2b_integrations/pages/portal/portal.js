// The embeddable customer portal: marketplace, set-up wizard, health and troubleshooting of one customer's
// integrations, all through the instances API with a customer token. Everything the API returns is put into
// the page as text (textContent / createTextNode through h()), never as HTML.
"use strict";

(() => {
  const API = new URL("../api/v1/", document.baseURI);
  const main = document.getElementById("main");
  const announcer = document.getElementById("announce");
  const session = { token: null, customer: null, kinds: null, poll: null };

  const HEALTH_TEXT = {
    "healthy": "Everything is working.",
    "degraded": "Working, but some items were set aside and need a look.",
    "failing": "The last run of a flow failed.",
    "paused": "Switched off: nothing runs until it is activated.",
    "never run": "Set up, but nothing has run yet.",
    "config problem": "Its settings have a problem; the last working settings are used meanwhile.",
  };
  const RUN_STATE = {
    success: "Finished successfully",
    failed: "Failed",
    running: "Running",
    queued: "Waiting to start",
    scheduled: "Scheduled",
  };
  const COUNT_TEXT = {
    rows_loaded_24h: "records loaded in the last 24 hours",
    quarantined_records_24h: "records set aside in the last 24 hours",
    quarantined_messages: "messages set aside",
    failed_files: "files that could not be read",
    dead_letters: "events that could not be delivered",
    pending_deliveries: "deliveries waiting",
  };
  const REPLAYABLE = ["quarantined_messages", "dead_letters"];

  // ---- small helpers ----------------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const WORDS = { api: "API", url: "URL", id: "ID", oauth2: "OAuth 2", sftp: "SFTP", crm: "CRM", http: "HTTP" };

  function humanize(name) {
    const text = String(name).split("_").map((word) => WORDS[word] || word).join(" ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  }

  function announce(text) {
    announcer.textContent = "";
    // A fresh text node is read out even when the text repeats.
    window.setTimeout(() => { announcer.textContent = text; }, 50);
  }

  function show(...children) {
    window.clearTimeout(session.poll);
    main.replaceChildren(...children.flat());
  }

  function focusHeading() {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }

  function segment(value) {
    return encodeURIComponent(value);
  }

  // ---- the API ----------------------------------------------------------------------------------------
  class ApiFailure extends Error {
    constructor(status, body) {
      super((body && body.detail) || `request failed (${status})`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, path, body, headers) {
    const init = { method, headers: { Authorization: `Bearer ${session.token}`, ...(headers || {}) } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, API), init);
    } catch (error) {
      throw new ApiFailure(0, { detail: "The service cannot be reached. Check your connection and try again." });
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (response.status === 401) {
      expired();
      throw new ApiFailure(401, data);
    }
    if (!response.ok) throw new ApiFailure(response.status, data);
    return { data, etag: response.headers.get("ETag") };
  }

  const customerPath = () => `customers/${segment(session.customer)}`;
  const instancePath = (integration) => `${customerPath()}/instances/${segment(integration)}`;

  // ---- the token: from the URL fragment or from the embedding page --------------------------------------
  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    } catch (error) {
      return null;
    }
  }

  function useToken(token) {
    const claims = typeof token === "string" ? claimsOf(token) : null;
    if (!claims || typeof claims.sub !== "string") return false;
    session.token = token;
    session.customer = claims.sub;
    return true;
  }

  function parentOrigins() {
    const meta = document.querySelector('meta[name="b2b-parent-origins"]');
    try {
      const listed = JSON.parse(meta ? meta.getAttribute("content") : "[]");
      return Array.isArray(listed) ? listed : [];
    } catch (error) {
      return [];
    }
  }

  function originAllowed(origin) {
    return parentOrigins().some((allowed) => {
      if (allowed === "'self'") return origin === window.location.origin;
      const wildcard = allowed.match(/^(https?:\/\/)\*\.(.+)$/);
      if (wildcard) return origin.startsWith(wildcard[1]) && origin.endsWith(`.${wildcard[2]}`);
      return origin === allowed;
    });
  }

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent || !originAllowed(event.origin)) return;
    const data = event.data || {};
    if (data.type !== "b2b-portal:token") return;
    const first = session.token === null;
    if (useToken(data.token)) {
      if (first) route();
    }
  });

  function expired() {
    // Several calls in flight fail together: the embedding app is told once per token.
    const had = session.token !== null;
    session.token = null;
    if (had && window.parent !== window) window.parent.postMessage({ type: "b2b-portal:token-expired" }, "*");
    show(
      h("h1", {}, "Your session has ended"),
      h("p", {}, "Open the integrations page again from the app you came from."),
    );
    focusHeading();
  }

  // ---- marketplace ------------------------------------------------------------------------------------
  function customerSlots(entry) {
    return entry.connections.filter((slot) => !slot.shared && slot.credential_types.length);
  }

  function providerSlots(entry) {
    return entry.connections.filter((slot) => !slot.shared && !slot.credential_types.length && slot.required);
  }

  function flowTrigger(flow) {
    if (flow.trigger === "schedule") return "runs on a schedule";
    if (flow.trigger === "manual") return "runs when started";
    return "runs when an event arrives";
  }

  // A view whose data arrives after the reader moved on must not replace the page they moved to.
  function stillOn(hash) {
    return window.location.hash === hash;
  }

  async function renderMarketplace() {
    const hash = window.location.hash;
    const [market, mine, me] = await Promise.all([
      api("GET", "marketplace"),
      api("GET", `${customerPath()}/instances`),
      api("GET", customerPath()),
    ]);
    const have = new Map(mine.data.instances.map((instance) => [instance.integration, instance]));
    const name = (me.data.header && me.data.header.name) || "";
    const cards = market.data.integrations.map((entry) => {
      const instance = have.get(entry.name);
      const titleId = `card-${entry.name}`;
      let state;
      let action;
      if (instance) {
        state = instance.active === false ? "Set up, switched off" : "Active";
        action = h("a", { class: "button", href: `#/instance/${segment(entry.name)}`, "aria-describedby": titleId },
          "Open");
      } else if (providerSlots(entry).length) {
        state = "Available: your provider sets it up";
        action = null;
      } else {
        state = "Available";
        action = h("a", { class: "button primary", href: `#/setup/${segment(entry.name)}`, "aria-describedby": titleId },
          "Set up");
      }
      return h("li", { class: "card" },
        h("h2", { id: titleId }, humanize(entry.name)),
        h("p", {}, entry.description || ""),
        h("p", { class: "badge" }, state),
        h("ul", { class: "flows" }, entry.flows.map((flow) =>
          h("li", {}, `${humanize(flow.name)}: ${flow.description || ""} (${flowTrigger(flow)})`))),
        action);
    });
    if (!stillOn(hash)) return;
    show(
      h("h1", {}, name ? `Integrations for ${name}` : "Integrations"),
      h("ul", { class: "cards", "aria-label": "Available integrations" }, cards),
    );
  }

  // ---- the set-up wizard ------------------------------------------------------------------------------
  function fieldIds(base) {
    return { input: base, help: `${base}-help`, error: `${base}-error` };
  }

  function labelFor(id, text, required) {
    return h("label", { for: id }, text, required ? h("span", { class: "req" }, " (required)") : null);
  }

  function helpText(spec) {
    const parts = [];
    if (spec.description) parts.push(spec.description);
    if (spec.minimum !== undefined && spec.maximum !== undefined) parts.push(`From ${spec.minimum} to ${spec.maximum}.`);
    else if (spec.minimum !== undefined) parts.push(`At least ${spec.minimum}.`);
    else if (spec.maximum !== undefined) parts.push(`At most ${spec.maximum}.`);
    if (spec.type === "array") parts.push("One per line.");
    if (spec.default !== undefined && spec.type !== "boolean") parts.push(`Default: ${Array.isArray(spec.default) ? spec.default.join(", ") : spec.default}.`);
    return parts.join(" ");
  }

  function configField(name, spec, required, current) {
    const ids = fieldIds(`cfg-${name}`);
    const help = helpText(spec);
    const describedBy = help ? ids.help : null;
    const value = current !== undefined ? current : spec.default;
    const common = { id: ids.input, name, "aria-describedby": describedBy, "aria-required": required ? "true" : null };
    let input;
    if (Array.isArray(spec.enum)) {
      input = h("select", common,
        required && value === undefined ? h("option", { value: "" }, "Choose…") : null,
        !required ? h("option", { value: "" }, "Default") : null,
        spec.enum.map((choice) => h("option", { value: JSON.stringify(choice), selected: value === choice }, String(choice))));
    } else if (spec.type === "boolean") {
      input = h("input", { ...common, type: "checkbox", checked: value === true });
    } else if (spec.type === "integer" || spec.type === "number") {
      input = h("input", {
        ...common, type: "number", inputmode: spec.type === "integer" ? "numeric" : "decimal",
        step: spec.type === "integer" ? "1" : "any", min: spec.minimum, max: spec.maximum,
      });
      if (value !== undefined) input.value = String(value);
    } else if (spec.type === "array" || spec.type === "object") {
      input = h("textarea", { ...common, rows: "3" });
      if (value !== undefined) input.value = spec.type === "array" ? value.join("\n") : JSON.stringify(value, null, 2);
    } else {
      input = h("input", { ...common, type: "text", autocomplete: "off" });
      if (value !== undefined) input.value = String(value);
    }
    input.dataset.kind = Array.isArray(spec.enum) ? "enum" : spec.type;
    if (spec.items) input.dataset.items = spec.items.type;
    const label = labelFor(ids.input, spec.title || humanize(name), required);
    const parts = spec.type === "boolean"
      ? [h("div", { class: "check" }, input, label)]
      : [label, input];
    return h("div", { class: "field" }, parts, help ? h("p", { id: ids.help, class: "help" }, help) : null,
      h("p", { id: ids.error, class: "error", hidden: true }));
  }

  function readConfig(form, schema) {
    const config = {};
    const errors = [];
    for (const [name, spec] of Object.entries(schema.properties || {})) {
      const input = form.querySelector(`#${CSS.escape(`cfg-${name}`)}`);
      const kind = input.dataset.kind;
      const raw = kind === "boolean" ? null : input.value.trim();
      if (kind === "boolean") {
        config[name] = input.checked;
      } else if (raw === "") {
        continue; // left empty: the template's default, or the API names a required one
      } else if (kind === "enum") {
        config[name] = JSON.parse(raw);
      } else if (kind === "integer") {
        if (!/^-?\d+$/.test(raw)) errors.push({ id: input.id, message: "Enter a whole number." });
        else config[name] = Number(raw);
      } else if (kind === "number") {
        if (!Number.isFinite(Number(raw))) errors.push({ id: input.id, message: "Enter a number." });
        else config[name] = Number(raw);
      } else if (kind === "array") {
        const items = raw.split("\n").map((line) => line.trim()).filter((line) => line !== "");
        if (input.dataset.items === "integer" || input.dataset.items === "number") {
          if (items.some((item) => !Number.isFinite(Number(item)))) errors.push({ id: input.id, message: "Enter one number per line." });
          else config[name] = items.map(Number);
        } else {
          config[name] = items;
        }
      } else if (kind === "object") {
        try {
          config[name] = JSON.parse(raw);
        } catch (error) {
          errors.push({ id: input.id, message: "Enter a JSON object." });
        }
      } else {
        config[name] = raw;
      }
    }
    return { config, errors };
  }

  function credentialFields(slot, kind) {
    const spec = session.kinds[kind];
    const box = h("div", { class: "cred-fields", id: `cred-${slot.name}-fields` });
    for (const field of [...spec.required, ...spec.optional]) {
      const ids = fieldIds(`cred-${slot.name}-${field}`);
      const required = spec.required.includes(field);
      const secret = spec.secret.includes(field);
      const multiline = field === "private_key";
      const attrs = {
        id: ids.input, name: field, "aria-required": required ? "true" : null,
        autocomplete: secret ? "new-password" : "off", spellcheck: "false",
      };
      const input = multiline
        ? h("textarea", { ...attrs, rows: "4" })
        : h("input", { ...attrs, type: secret ? "password" : field === "port" ? "number" : "text" });
      input.dataset.field = field;
      box.append(h("div", { class: "field" }, labelFor(ids.input, humanize(field), required), input,
        h("p", { id: ids.error, class: "error", hidden: true })));
    }
    return box;
  }

  function slotFieldset(slot, saved) {
    const legendId = `slot-${slot.name}-legend`;
    const fieldset = h("fieldset", { id: `slot-${slot.name}`, "aria-describedby": `slot-${slot.name}-error` },
      h("legend", { id: legendId }, `Connection: ${humanize(slot.name)}`),
      slot.description ? h("p", { class: "help" }, slot.description) : null,
      h("p", { id: `slot-${slot.name}-error`, class: "error", hidden: true }));
    const area = h("div", {});
    const kindId = `cred-${slot.name}-kind`;
    const kindSelect = h("select", { id: kindId, name: "kind" },
      slot.credential_types.map((kind) => h("option", { value: kind }, humanize(kind))));
    const draw = () => area.replaceChildren(credentialFields(slot, kindSelect.value));
    kindSelect.addEventListener("change", draw);
    const kindField = h("div", { class: "field", hidden: slot.credential_types.length < 2 },
      h("label", { for: kindId }, "Kind of credentials"), kindSelect);
    if (saved && saved.configured && saved.managed) {
      if (saved.kind && slot.credential_types.includes(saved.kind)) kindSelect.value = saved.kind;
      const what = [saved.kind && humanize(saved.kind), saved.host, saved.login].filter(Boolean).join(", ");
      const replace = h("input", { type: "checkbox", id: `slot-${slot.name}-replace` });
      const wrap = h("div", { hidden: true }, kindField, area);
      replace.addEventListener("change", () => { wrap.hidden = !replace.checked; });
      fieldset.append(
        h("p", {}, `Saved: ${what || "yes"}. Secrets are never shown again.`),
        h("div", { class: "check" }, replace, h("label", { for: replace.id }, "Replace the saved credentials")),
        wrap);
      draw();
      fieldset.dataset.replace = replace.id;
    } else {
      fieldset.append(kindField, area);
      draw();
    }
    fieldset.dataset.slot = slot.name;
    return fieldset;
  }

  function readCredentials(fieldset) {
    if (fieldset.dataset.replace && !document.getElementById(fieldset.dataset.replace).checked) return null;
    const body = { kind: fieldset.querySelector(`#${CSS.escape(`cred-${fieldset.dataset.slot}-kind`)}`).value };
    for (const input of fieldset.querySelectorAll("[data-field]")) {
      const value = input.value.trim();
      if (value === "") continue;
      body[input.dataset.field] = input.dataset.field === "port" && /^\d+$/.test(value) ? Number(value) : value;
    }
    return body;
  }

  function clearErrors(form) {
    for (const error of form.querySelectorAll(".error")) {
      error.textContent = "";
      error.hidden = true;
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      const kept = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.endsWith("-error"));
      if (kept.length) input.setAttribute("aria-describedby", kept.join(" "));
      else input.removeAttribute("aria-describedby");
    }
    const summary = form.querySelector(".summary");
    summary.hidden = true;
    summary.replaceChildren();
  }

  // Each problem beside its field: the message in the field's error paragraph, which the field names in
  // aria-describedby and marks with aria-invalid; problems without a field go to the summary only. The
  // summary (an alert) counts them and focus moves to the first field in error.
  function showErrors(form, problems) {
    const summary = form.querySelector(".summary");
    const list = h("ul", {});
    let first = null;
    for (const problem of problems) {
      const target = problem.id ? document.getElementById(problem.id) : null;
      const error = target ? document.getElementById(problem.errorId || `${problem.id}-error`) : null;
      if (target && error) {
        error.textContent = error.textContent ? `${error.textContent} ${problem.message}` : problem.message;
        error.hidden = false;
        target.setAttribute("aria-invalid", "true");
        const ids = new Set((target.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
        ids.add(error.id);
        target.setAttribute("aria-describedby", [...ids].join(" "));
        first = first || target;
        const label = form.querySelector(`label[for="${CSS.escape(target.id)}"]`);
        list.append(h("li", {}, `${label ? label.textContent.replace(" (required)", "") : humanize(problem.id)}: ${problem.message}`));
      } else {
        list.append(h("li", {}, problem.message));
      }
    }
    summary.replaceChildren(
      h("p", {}, problems.length === 1 ? "Please fix 1 problem:" : `Please fix ${problems.length} problems:`), list);
    summary.hidden = false;
    (first || summary).focus();
  }

  function problemTarget(form, integration, keyPath) {
    const prefix = `integrations.${integration}.`;
    const path = keyPath && keyPath.startsWith(prefix) ? keyPath.slice(prefix.length).split(".") : [];
    if (path[0] === "config" && path[1] && document.getElementById(`cfg-${path[1]}`)) return { id: `cfg-${path[1]}` };
    if (path[0] === "connections" && path[1]) {
      const fieldset = document.getElementById(`slot-${path[1]}`);
      if (fieldset) return { id: fieldset.id, errorId: `${fieldset.id}-error` };
    }
    return {};
  }

  async function renderWizard(integration) {
    const hash = window.location.hash;
    const [entry, kinds] = await Promise.all([
      api("GET", `marketplace/${segment(integration)}`),
      session.kinds ? Promise.resolve(session.kinds) : fetch(new URL("credential-kinds.json", document.baseURI)).then((r) => r.json()),
    ]);
    session.kinds = kinds;
    let instance = null;
    let saved = {};
    try {
      instance = await api("GET", instancePath(integration));
      const creds = await api("GET", `${instancePath(integration)}/credentials`);
      saved = Object.fromEntries(creds.data.slots.map((slot) => [slot.slot, slot]));
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    const state = { etag: instance && instance.etag, settings: instance ? instance.data.settings : null };
    const schema = entry.data.config_schema;
    const required = new Set(schema.required || []);
    const current = (state.settings && state.settings.config) || {};
    const slots = customerSlots(entry.data);
    const activeNow = instance && instance.data.active !== false;

    const form = h("form", { novalidate: true, "aria-labelledby": "wizard-title" },
      h("div", { class: "summary", role: "alert", tabindex: "-1", hidden: true }),
      Object.keys(schema.properties || {}).length
        ? h("fieldset", {}, h("legend", {}, "Settings"),
          Object.entries(schema.properties).map(([name, spec]) => configField(name, spec, required.has(name), current[name])))
        : null,
      slots.map((slot) => slotFieldset(slot, saved[slot.name])),
      activeNow ? null : h("div", { class: "check" },
        h("input", { type: "checkbox", id: "activate", checked: true }),
        h("label", { for: "activate" }, "Switch it on when saved")),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary", id: "save" }, "Save"),
        h("a", { href: instance ? `#/instance/${segment(integration)}` : "#/", class: "button" }, "Cancel")));

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("#save");
      clearErrors(form);
      const { config, errors } = readConfig(form, schema);
      if (errors.length) {
        showErrors(form, errors);
        return;
      }
      button.disabled = true;
      try {
        await saveWizard(form, integration, state, config, slots);
      } finally {
        button.disabled = false;
      }
    });

    if (!stillOn(hash)) return;
    show(
      h("h1", { id: "wizard-title" }, `${instance ? "Settings of" : "Set up"} ${humanize(integration)}`),
      h("p", {}, entry.data.description || ""),
      h("p", { class: "help" }, "Fields marked (required) must be filled in."),
      form,
    );
  }

  async function saveWizard(form, integration, state, config, slots) {
    const path = instancePath(integration);
    let settings;
    if (state.settings) {
      settings = { ...state.settings, config };
    } else {
      const connections = {};
      // A customer binds its slots to its own credentials: the connection the credentials endpoint writes.
      for (const slot of slots) connections[slot.name] = `b2b_${session.customer}__${integration}__${slot.name}`;
      settings = { config, connections };
    }
    try {
      const saved = await api("PUT", path, settings, state.etag ? { "If-Match": state.etag } : {});
      state.etag = saved.etag;
      state.settings = saved.data.settings;
    } catch (error) {
      if (error.status === 422 && Array.isArray(error.body.problems)) {
        showErrors(form, error.body.problems.map((problem) => ({
          ...problemTarget(form, integration, problem.key_path), message: problem.message,
        })));
      } else if (error.status === 412) {
        showErrors(form, [{ message: "Someone else changed these settings meanwhile. Open them again to see the change." }]);
      } else if (error.status !== 401) {
        showErrors(form, [{ message: error.message }]);
      }
      return;
    }
    for (const fieldset of form.querySelectorAll("fieldset[data-slot]")) {
      const body = readCredentials(fieldset);
      if (body === null) continue;
      const slot = fieldset.dataset.slot;
      try {
        const answer = await api("PUT", `${path}/credentials/${segment(slot)}`, body, { "If-Match": state.etag });
        state.etag = answer.etag;
        state.settings = answer.data.instance.settings;
      } catch (error) {
        if (error.status === 401) return;
        const field = error.body.field ? `cred-${slot}-${error.body.field}` : null;
        const target = field && document.getElementById(field) ? { id: field } : { id: `slot-${slot}`, errorId: `slot-${slot}-error` };
        // The detail starts with "customer ..., integration ..., connection slot ...: field: ": the field
        // is already named by where the message stands.
        const message = String(error.body.detail || error.message).split(": ").slice(-1)[0];
        showErrors(form, [{ ...target, message: error.status === 422 ? message : error.message }]);
        return;
      }
    }
    const activate = form.querySelector("#activate");
    if (activate && activate.checked) {
      try {
        const answer = await api("POST", `${path}/activate`, undefined, { "If-Match": state.etag });
        state.etag = answer.etag;
      } catch (error) {
        if (error.status !== 401) showErrors(form, [{ message: `Saved, but not switched on: ${error.message}` }]);
        return;
      }
    }
    announce(activate && activate.checked ? "Saved and switched on." : "Saved.");
    window.location.hash = `#/instance/${segment(integration)}`;
  }

  // ---- one instance: health, runs, actions ------------------------------------------------------------
  function runLine(run) {
    const state = RUN_STATE[run.state] || humanize(run.state || "unknown");
    const at = run.end_date || run.start_date || run.run_after;
    const parts = [h("strong", {}, state), at ? ` ${when(at)}` : ""];
    if (run.state === "failed") {
      const step = run.failed_step ? ` at step ${humanize(run.failed_step)}` : "";
      const message = run.error && run.error.message ? `: ${run.error.message}` : "";
      parts.push(h("span", { class: "why" }, `${step}${message}`));
    }
    return parts;
  }

  function countsText(counts) {
    return Object.entries(counts || {})
      .filter(([name, value]) => COUNT_TEXT[name] && value !== null && value !== undefined && (value > 0 || name === "rows_loaded_24h"))
      .map(([name, value]) => `${value} ${COUNT_TEXT[name]}`);
  }

  function nextRunText(next) {
    if (!next) return "";
    if (next.trigger === "manual") return "Runs when started.";
    if (next.trigger === "event") return "Runs when an event arrives.";
    if (next.create_after) return `Next run: ${when(next.create_after)}.`;
    return "";
  }

  async function action(button, work, done) {
    const region = document.getElementById("action-result");
    button.disabled = true;
    try {
      const text = await work();
      announce(text);
      await renderInstance(done.integration, { keepFocus: button.id, result: text });
    } catch (error) {
      if (error.status === 401) return;
      button.disabled = false;
      region.replaceChildren(h("p", { class: "error" }, error.message));
      region.focus();
    }
  }

  // Templates change rarely: the marketplace entry is read once per page load, not on every refresh.
  const entries = new Map();
  function marketplaceEntry(integration) {
    if (!entries.has(integration)) {
      const pending = api("GET", `marketplace/${segment(integration)}`);
      pending.catch(() => entries.delete(integration));
      entries.set(integration, pending);
    }
    return entries.get(integration);
  }

  async function renderInstance(integration, options) {
    const opts = options || {};
    const hash = window.location.hash;
    const path = instancePath(integration);
    let status;
    let instance;
    let entry;
    let creds;
    try {
      [status, instance, entry, creds] = await Promise.all([
        api("GET", `${path}/status`),
        api("GET", path),
        marketplaceEntry(integration).catch(() => ({ data: { flows: [], connections: [] } })),
        api("GET", `${path}/credentials`),
      ]);
    } catch (error) {
      if (error.status !== 404) throw error;
      if (stillOn(hash)) renderNotFound();
      return undefined;
    }
    const flows = status.data.flows;
    const runs = await Promise.all(flows.map((flow) =>
      api("GET", `${path}/flows/${segment(flow.flow)}/runs?limit=5`).then((r) => r.data.runs).catch(() => [])));
    const descriptions = Object.fromEntries(entry.data.flows.map((flow) => [flow.name, flow.description]));
    const health = status.data.health;
    const active = instance.data.active !== false;
    const counts = status.data.counts || {};
    const replayable = REPLAYABLE.some((name) => counts[name] > 0);
    const busy = flows.some((flow) => !flow.deployed) ||
      runs.some((list) => list.some((run) => ["queued", "running", "scheduled"].includes(run.state)));

    const toggle = h("button", { type: "button", id: "toggle", class: active ? "danger" : "primary" },
      active ? "Switch off" : "Switch on");
    toggle.addEventListener("click", async () => {
      if (active && !(await confirmDialog(`Switch off ${humanize(integration)}?`,
        "Nothing runs until you switch it on again. Events that arrive meanwhile are kept and processed then."))) return;
      await action(toggle, async () => {
        const fresh = await api("GET", path);
        await api("POST", `${path}/${active ? "deactivate" : "activate"}`, undefined, { "If-Match": fresh.etag });
        return active ? "Switched off." : "Switched on.";
      }, { integration });
    });

    const replay = replayable
      ? h("button", { type: "button", id: "replay" }, "Process set-aside items again")
      : null;
    if (replay) {
      replay.addEventListener("click", () => action(replay, async () => {
        const answer = await api("POST", `${path}/replay`, {});
        let queued = 0;
        let delivered = 0;
        let still = 0;
        for (const flow of answer.data.flows) {
          queued += (flow.quarantined || []).length + (flow.webhooks || []).length;
          for (const target of flow.dead_letters || []) {
            delivered += Number(target.delivered || 0);
            still += Number(target.dead_lettered || 0);
          }
        }
        const parts = [`${queued} set-aside message(s) sent to be processed again`];
        if (delivered || still) parts.push(`${delivered} undelivered event(s) delivered now, ${still} still failing`);
        return `${parts.join("; ")}.`;
      }, { integration }));
    }

    const flowSections = flows.map((flow, index) => {
      const headingId = `flow-${flow.flow}`;
      const run = h("button", { type: "button", id: `run-${flow.flow}`, "aria-describedby": headingId,
        disabled: !active || !flow.deployed }, "Run now");
      run.addEventListener("click", () => action(run, async () => {
        await api("POST", `${path}/flows/${segment(flow.flow)}/runs`, {});
        return `${humanize(flow.flow)} started.`;
      }, { integration }));
      const items = runs[index].map((found, runIndex) => {
        let retry = null;
        if (found.state === "failed") {
          retry = h("button", { type: "button", id: `retry-${flow.flow}-${runIndex}` }, "Retry",
            h("span", { class: "sr-only" }, ` the run of ${when(found.run_after)}`));
          retry.addEventListener("click", () => action(retry, async () => {
            await api("POST", `${path}/flows/${segment(flow.flow)}/runs/${segment(found.run_id)}/retry`);
            return "The failed steps run again.";
          }, { integration }));
        }
        return h("li", { class: `run run-${found.state}` }, h("span", {}, runLine(found)), retry);
      });
      const facts = [nextRunText(flow.next_run), ...countsText(flow.counts).map((text) => `${text}.`)];
      if (!flow.deployed) facts.unshift("Being set up: this takes up to a minute.");
      return h("section", { class: "flow", "aria-labelledby": headingId },
        h("h2", { id: headingId }, humanize(flow.flow)),
        descriptions[flow.flow] ? h("p", {}, descriptions[flow.flow]) : null,
        h("p", { class: "help" }, facts.filter(Boolean).join(" ")),
        run,
        h("h3", {}, "Recent runs"),
        items.length ? h("ul", { class: "runs" }, items) : h("p", { class: "muted" }, "No runs yet."));
    });

    const connections = creds.data.slots.filter((slot) => slot.managed || slot.credential_types.length);
    const slotItems = connections.map((slot) => {
      const test = h("button", { type: "button", id: `test-${slot.slot}`, disabled: !slot.configured }, "Test connection",
        h("span", { class: "sr-only" }, ` ${humanize(slot.slot)}`));
      test.addEventListener("click", async () => {
        const out = document.getElementById(`test-${slot.slot}-result`);
        test.disabled = true;
        try {
          const answer = await api("POST", `${path}/credentials/${segment(slot.slot)}/test`);
          out.textContent = answer.data.ok ? "The connection works." : `The connection failed: ${answer.data.reason}`;
        } catch (error) {
          out.textContent = error.message;
        } finally {
          test.disabled = false;
        }
      });
      const what = slot.configured ? [slot.kind && humanize(slot.kind), slot.host, slot.login].filter(Boolean).join(", ") : "not set";
      return h("li", {}, h("span", {}, `${humanize(slot.slot)}: ${what}`), test,
        h("span", { id: `test-${slot.slot}-result`, role: "status" }));
    });

    if (!stillOn(hash)) return undefined;
    show(
      h("h1", {}, humanize(integration)),
      h("section", { class: `health health-${health.replace(" ", "-")}`, "aria-labelledby": "health-title" },
        h("h2", { id: "health-title" }, "Health: ", h("span", { class: "word" }, humanize(health))),
        h("p", {}, HEALTH_TEXT[health] || ""),
        status.data.reasons.length ? h("ul", {}, status.data.reasons.map((reason) => h("li", {}, reason))) : null,
        (status.data.config_problems || []).length
          ? h("ul", {}, status.data.config_problems.map((problem) => h("li", {}, `${problem.key_path}: ${problem.message}`)))
          : null),
      h("div", { id: "action-result", tabindex: "-1", role: "status" }, opts.result ? h("p", {}, opts.result) : null),
      h("div", { class: "actions" },
        h("a", { class: "button", href: `#/setup/${segment(integration)}` }, "Change settings"),
        replay, toggle),
      flowSections,
      connections.length ? h("section", { class: "connections", "aria-labelledby": "conn-title" },
        h("h2", { id: "conn-title" }, "Connections"), h("ul", { class: "slots" }, slotItems)) : null,
    );
    if (opts.keepFocus && document.getElementById(opts.keepFocus)) document.getElementById(opts.keepFocus).focus();
    else if (!opts.quiet) focusHeading();
    if (busy) {
      // Something is starting or running: look again shortly, keeping the reader's place.
      session.poll = window.setTimeout(() => {
        const focused = document.activeElement && document.activeElement.id;
        renderInstance(integration, { keepFocus: focused, quiet: true }).catch(() => {});
      }, 5000);
    }
    return undefined;
  }

  function confirmDialog(title, text) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    const yes = document.getElementById("confirm-yes");
    const no = document.getElementById("confirm-no");
    const opener = document.activeElement;
    return new Promise((resolve) => {
      const finish = (answer) => {
        yes.removeEventListener("click", onYes);
        no.removeEventListener("click", onNo);
        dialog.removeEventListener("cancel", onNo);
        if (dialog.open) dialog.close();
        if (opener && !answer) opener.focus();
        resolve(answer);
      };
      const onYes = () => finish(true);
      const onNo = () => finish(false);
      yes.addEventListener("click", onYes);
      no.addEventListener("click", onNo);
      dialog.addEventListener("cancel", onNo);
      dialog.showModal();
      no.focus();
    });
  }

  function renderNotFound() {
    // The same words whether it does not exist or belongs to someone else.
    show(
      h("h1", {}, "Not found"),
      h("p", {}, "There is no such integration here."),
      h("p", {}, h("a", { href: "#/" }, "See all integrations")),
    );
    focusHeading();
  }

  // ---- routing ----------------------------------------------------------------------------------------
  async function route() {
    if (!session.token) {
      show(h("h1", {}, "Open this page from your app"), h("p", {}, "This page needs a sign-in from the app you use."));
      return;
    }
    const [, view, name] = window.location.hash.match(/^#\/(setup|instance)\/([^/]+)$/) || [];
    let integration = null;
    try {
      integration = name ? decodeURIComponent(name) : null;
    } catch (error) {
      integration = null;
    }
    try {
      if (view === "setup" && integration) await renderWizard(integration);
      else if (view === "instance" && integration) await renderInstance(integration);
      else await renderMarketplace();
      if (view !== "instance") focusHeading();
    } catch (error) {
      if (error.status === 401) return;
      if (error.status === 404) {
        renderNotFound();
        return;
      }
      show(h("h1", {}, "Something went wrong"), h("p", {}, error.message || "Please try again."),
        h("p", {}, h("a", { href: "#/" }, "See all integrations")));
      focusHeading();
    }
  }

  function tokenFromFragment() {
    const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
    if (!token) return false;
    // Out of the address bar and history: the token must not be bookmarked, shared or copied.
    window.history.replaceState(null, "", `${window.location.pathname}${window.location.search}#/`);
    if (!useToken(token)) {
      expired();
      return true;
    }
    route();
    return true;
  }

  window.addEventListener("hashchange", () => {
    // A new #token= (the embedding app opened the page again) replaces the one in use.
    if (tokenFromFragment()) return;
    if (window.location.hash.startsWith("#/") || window.location.hash === "") route();
  });

  function start() {
    if (tokenFromFragment()) return;
    if (window.parent !== window) {
      main.replaceChildren(h("p", { class: "muted" }, "Waiting for the app to sign in…"));
      window.parent.postMessage({ type: "b2b-portal:ready" }, "*");
    } else {
      route();
    }
  }

  start();
})();
