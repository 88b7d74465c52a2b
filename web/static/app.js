// Environment rows on the deployment form: add and remove without a reload; values grow
// with their lines (up to 8), so a multi-line value shown again after an error stays readable.
// A row's kind (value, secret, from Secret) shows its inputs (CSS); every row sends all of
// them so the lists stay aligned, and the server reads those of the kind chosen.
(function () {
  const rows = document.getElementById("env-rows");
  const add = document.getElementById("add-env");
  if (!rows || !add) return;
  let added = 0;
  function fit(textarea) {
    textarea.rows = Math.min(8, Math.max(1, textarea.value.split("\n").length));
  }
  function clear(row) {  // a fresh row: a plain value, no stored secret behind it
    row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; });
    row.querySelectorAll("textarea").forEach(fit);
    const kind = row.querySelector("select[name=env_kind]");
    if (kind) kind.value = "plain";
    const secret = row.querySelector("input[name=env_secret]");
    if (secret) secret.placeholder = "secret value";
    const hint = row.querySelector(".secret-hint");
    if (hint) hint.textContent = rows.dataset.secretHint || "";
  }
  rows.querySelectorAll("textarea").forEach(fit);
  rows.addEventListener("input", function (event) {
    if (event.target.tagName === "TEXTAREA") fit(event.target);
  });
  rows.addEventListener("change", function (event) {
    if (event.target.name !== "env_kind") return;
    const row = event.target.closest(".env-row");
    const plain = row.querySelector("textarea[name=env_value]");
    const secret = row.querySelector("input[name=env_secret]");
    if (event.target.value === "secret" && plain && secret && plain.value && !secret.value) {
      secret.value = plain.value;  // made secret: the value typed moves, out of sight
      plain.value = "";
      fit(plain);
    }
  });
  add.addEventListener("click", function () {
    const row = rows.querySelector(".env-row").cloneNode(true);
    clear(row);
    added += 1;
    const hint = row.querySelector(".secret-hint");
    const secret = row.querySelector("input[name=env_secret]");
    if (hint && secret) {
      hint.id = "env-hint-added-" + added;
      secret.setAttribute("aria-describedby", hint.id);
    }
    rows.appendChild(row);
    row.querySelector("input").focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-env")) return;
    const row = event.target.closest(".env-row");
    if (rows.querySelectorAll(".env-row").length > 1) row.remove();
    else clear(row);
  });
})();

// Volume rows on the deployment form: add and remove without a reload. The volume select
// lists the volumes of all the user's groups as group/name; the group select shows only
// those of the group chosen (a hidden one chosen before goes back to "no volume").
(function () {
  const rows = document.getElementById("mount-rows");
  const add = document.getElementById("add-mount");
  if (!rows || !add) return;
  const group = document.querySelector("select[name=group]");
  const none = document.getElementById("mount-none");
  function current() { return group ? group.value : rows.dataset.group; }
  function clear(row) {
    row.querySelector("select[name=mount_volume]").value = "";
    row.querySelector("input[name=mount_path]").value = "";
    row.querySelector("select[name=mount_mode]").value = "rw";
    row.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
  }
  function filter() {
    const chosen = current();
    let offered = 0;
    rows.querySelectorAll("select[name=mount_volume]").forEach(function (select) {
      offered = 0;
      Array.from(select.options).forEach(function (option) {
        if (!option.dataset.group) return;
        const ok = option.dataset.group === chosen;
        option.hidden = !ok;
        option.disabled = !ok;
        if (ok) offered += 1;
      });
      const picked = select.options[select.selectedIndex];
      if (picked && picked.disabled) select.value = "";
    });
    if (none) {
      none.hidden = offered > 0;
      const link = none.querySelector("a");
      if (link) link.href = link.pathname + "?group=" + encodeURIComponent(chosen);
    }
  }
  if (group) group.addEventListener("change", filter);
  filter();
  add.addEventListener("click", function () {
    const row = rows.querySelector(".mount-row").cloneNode(true);
    clear(row);
    rows.appendChild(row);
    row.querySelector("select").focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-mount")) return;
    const row = event.target.closest(".mount-row");
    if (rows.querySelectorAll(".mount-row").length > 1) row.remove();
    else clear(row);
  });
})();

// A select with data-autosubmit sends its form when changed (no inline handlers: the
// Content-Security-Policy allows scripts from this file only). A form with data-compact
// leaves its empty fields out of the address it opens.
(function () {
  document.addEventListener("change", function (event) {
    if (!event.target.matches("select[data-autosubmit]")) return;
    const form = event.target.form;
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.submit();
  });
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches("form[data-compact]") || form.method.toLowerCase() !== "get") return;
    event.preventDefault();
    const params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { if (String(value).trim()) params.append(key, value); });
    const query = params.toString();
    window.location.assign(form.action + (query ? "?" + query : ""));
  });
})();

// Confirm steps in a <dialog>: a link with data-opens="<dialog id>" opens it instead of
// following its href (the same confirm step as a page, for browsers without JavaScript).
(function () {
  document.addEventListener("click", function (event) {
    const opener = event.target.closest("[data-opens]");
    if (!opener) return;
    const dialog = document.getElementById(opener.dataset.opens);
    if (!dialog || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    dialog.showModal();
    const cancel = dialog.querySelector("[formmethod=dialog]");  // the safe choice first
    if (cancel) cancel.focus();
  });
})();

// Live cards: the Deployments page refreshes each card's status from the API every few
// seconds (only while the page is visible), without reloading. It asks for the page of the
// listing it shows, with the ETag that page had: a page that did not change (304) is not
// sent again nor drawn again.
(function () {
  const toolbar = document.querySelector("[data-live]");
  if (!toolbar) return;
  const source = toolbar.dataset.live;
  function reading(el, u) {  // what the pods use now against their limits; none: hidden
    const known = Boolean(u && u.used);
    el.textContent = known ? "using " + u.used + " of " + u.limit + " limit" : "";
    el.classList.toggle("hidden", !known);
  }
  function appliedText(item, elapsed) {
    const st = item.status || {};
    let text = (item.commit || "").slice(0, 7) || "—";
    if (item.running && item.running.commit) text += " · live " + item.running.commit.slice(0, 7);
    if (st.age !== null && st.age !== undefined) text += " · read " + Math.round(st.age + elapsed) + "s ago" + (st.stale ? " (stale)" : "");
    return text;
  }
  function runningNote(item) {  // the server's running_note filter, for the same JSON
    const run = item.running;
    if (!run || run.matches !== false) return "";
    const live = run.commit ? "commit " + run.commit.slice(0, 7)
      : run.olderThan ? "older than the last " + run.olderThan + " versions" : "commit unknown";
    return "Running " + (run.image || "an unknown image") + " (" + live + ") · committed " +
      item.image + " (" + ((item.commit || "").slice(0, 7) || "—") + ")";
  }
  function update(card, item) {
    const st = item.status || {};
    const badge = card.querySelector("[data-field=status]");
    if (badge) {
      badge.textContent = st.label || st.state;
      const state = st.state === "not connected" ? "committed" : String(st.state || "");
      badge.className = "status " + state.replace(/ /g, "-");
      badge.title = st.message || st.state || "";
    }
    const detail = card.querySelector("[data-field=detail]");
    if (detail) {  // the same markup as the server renders
      detail.replaceChildren();
      if (st.reason) {
        const strong = document.createElement("strong");
        strong.textContent = st.reason;
        detail.append(strong);
      }
      if (st.message) detail.append(" " + st.message);
      if (st.remediation) {
        const note = document.createElement("span");
        note.className = "muted";
        note.textContent = "Remediated: " + st.remediation;
        detail.append(document.createElement("br"), note);
      }
      detail.classList.toggle("hidden", !(st.reason || st.message));
      detail.dataset.state = st.state || "";  // its colour: a failure's, or a neutral one
    }
    const problems = card.querySelector("[data-field=problems]");
    if (problems) {  // what to fix outside the deployment (a missing frp Secret...)
      const notes = st.problems || [];
      problems.replaceChildren(...notes.map(function (text) {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }));
      problems.classList.toggle("hidden", notes.length === 0);
    }
    const cpu = card.querySelector("[data-field=cpu]");
    if (cpu) reading(cpu, st.cpu);
    const memory = card.querySelector("[data-field=memory]");
    if (memory) reading(memory, st.memory);
    const applied = card.querySelector("[data-field=applied]");
    if (applied) applied.textContent = appliedText(item, 0);
    const retry = card.querySelector("[data-field=retry]");
    if (retry) retry.classList.toggle("hidden", st.state !== "failed");
    const running = card.querySelector("[data-field=running]");
    if (running) {  // what runs, when it is not what was committed
      running.textContent = runningNote(item);
      running.classList.toggle("hidden", !running.textContent);
    }
  }
  let known = null;  // {etag, items, at}: the page when last sent
  async function fetchPage() {
    const headers = { Accept: "application/json" };
    if (known) headers["If-None-Match"] = known.etag;
    const response = await fetch(source, { headers: headers });
    if (response.status === 304 && known) return Object.assign({ fresh: false }, known);
    if (!response.ok) throw new Error(String(response.status));
    const page = { etag: response.headers.get("ETag"), items: await response.json(), at: Date.now() };
    known = page.etag ? page : null;
    return Object.assign({ fresh: true }, page);
  }
  async function refresh() {
    if (document.hidden) return;
    try {
      const shown = Array.from(document.querySelectorAll("[data-testid=deployment-card]"))
        .filter(function (card) { return !card.dataset.pending; })
        .map(function (card) { return card.dataset.name; }).sort();
      const page = await fetchPage();
      const listed = page.items.map(function (item) { return item.name; }).sort();
      const editing = document.activeElement && ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
      if (shown.join() !== listed.join() && !editing && !document.querySelector("dialog[open]")) {
        window.location.reload();  // a deployment appeared or went away: draw the page again
        return;
      }
      page.items.forEach(function (item) {
        const card = document.querySelector('[data-testid=deployment-card][data-name="' + item.name + '"]');
        if (!card) return;
        if (page.fresh) { update(card, item); return; }
        const applied = card.querySelector("[data-field=applied]");  // unchanged: only the reading's age
        if (applied) applied.textContent = appliedText(item, (Date.now() - page.at) / 1000);
      });
    } catch (error) { /* the next round will try again */ }
  }
  setInterval(refresh, 3000);
})();

// The group overview: its rows are asked for again every few seconds with the ETag they
// had; only rows that changed (200) are drawn again.
(function () {
  const rows = document.querySelector("tbody[data-rows]");
  if (!rows) return;
  let etag = rows.dataset.etag;
  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(rows.dataset.rows, { headers: { Accept: "text/html", "If-None-Match": etag } });
      if (response.status !== 200) return;
      const html = await response.text();
      const parsed = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
      rows.replaceChildren(...parsed.querySelector("tbody").childNodes);
      etag = response.headers.get("ETag") || etag;
    } catch (error) { /* the next round will try again */ }
  }
  setInterval(refresh, 3000);
})();

// The log viewer: one pod, or all pods merged (each line tagged [pod], notes [all pods]);
// optional timestamps (shown muted) and the previous container. Follow reads the server-sent
// events from a fetch body, so a refusal (no previous container, too many streams) shows its
// message; otherwise one plain fetch. At most MAX_LINES lines stay on the page (the oldest
// go); the download link asks for what is shown, without following.
(function () {
  const form = document.getElementById("log-controls");
  const out = document.getElementById("log");
  if (!form || !out) return;
  const problem = document.getElementById("log-problem");
  const download = document.getElementById("log-download");
  const MAX_LINES = 20000;
  const TAG = /^\[([^\]\s]+|all pods)\] /;
  const STAMP = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) /;
  const colours = new Map();
  let reading = null;  // the AbortController of the read in progress

  function colour(pod) {
    if (!colours.has(pod)) colours.set(pod, "pod-" + (colours.size % 6));
    return colours.get(pod);
  }

  function row(text, view) {
    const line = document.createElement("span");
    line.className = "log-line";
    let rest = text;
    let found = view.tagged ? TAG.exec(rest) : null;
    if (found) {
      const tag = document.createElement("span");
      tag.className = found[1] === "all pods" ? "log-note" : "log-pod " + colour(found[1]);
      tag.textContent = "[" + found[1] + "]";
      line.append(tag, " ");
      rest = rest.slice(found[0].length);
    }
    found = view.stamped ? STAMP.exec(rest) : null;
    if (found) {
      const time = document.createElement("time");
      time.className = "log-time";
      time.dateTime = found[1];
      time.textContent = found[1];
      line.append(time, " ");
      rest = rest.slice(found[0].length);
    }
    line.append(rest + "\n");
    return line;
  }

  function append(texts, view) {
    if (!texts.length) return;
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    const fragment = document.createDocumentFragment();
    texts.slice(-MAX_LINES).forEach(function (text) { fragment.append(row(text, view)); });
    out.append(fragment);
    for (let extra = out.childElementCount - MAX_LINES; extra > 0; extra--) out.firstElementChild.remove();
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  async function refused(response) {
    let message = "The log could not be read (" + response.status + ").";
    try {
      const body = await response.json();
      if (body && body.message) message = body.message;
    } catch (error) { /* not JSON: the status says enough */ }
    problem.textContent = message;
    problem.hidden = false;
  }

  async function events(response, view, controller) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    let data = [];
    let kind = "message";
    for (;;) {
      const part = await reader.read();
      if (part.done) return;
      pending += part.value;
      const lines = pending.split("\n");
      pending = lines.pop();
      const shown = [];
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {  // the end of an event
          if (kind === "end") { append(shown, view); controller.abort(); return; }
          if (data.length) shown.push(data.join("\n"));
          data = [];
          kind = "message";
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        } else if (line.startsWith("event:")) {
          kind = line.slice(6).trim();
        }  // ":" comments are heartbeats
      }
      append(shown, view);
    }
  }

  async function show(event) {
    if (event) event.preventDefault();
    if (reading) reading.abort();
    const controller = new AbortController();
    reading = controller;
    out.replaceChildren();
    problem.hidden = true;
    const data = new FormData(form);
    const params = new URLSearchParams({ pod: data.get("pod"), container: data.get("container"), tail: data.get("tail") || "200" });
    if (data.get("timestamps")) params.set("timestamps", "1");
    if (data.get("previous")) params.set("previous", "1");
    const view = { tagged: data.get("pod") === "*", stamped: Boolean(data.get("timestamps")) };
    if (download) download.href = form.dataset.source + "?" + params + "&download=1";
    const follow = Boolean(data.get("follow"));
    if (follow) params.set("follow", "1");
    try {
      const response = await fetch(form.dataset.source + "?" + params, {
        headers: { Accept: follow ? "text/event-stream" : "text/plain" },
        signal: controller.signal,
      });
      if (!response.ok) { await refused(response); return; }
      if (follow) {
        await events(response, view, controller);
      } else {
        const lines = (await response.text()).split("\n");
        if (lines[lines.length - 1] === "") lines.pop();
        append(lines, view);
      }
    } catch (error) {
      if (error.name !== "AbortError") {
        problem.textContent = "The log could not be read: " + error.message;
        problem.hidden = false;
      }
    }
  }
  form.addEventListener("submit", show);
  show();
})();

// Errors at the field: a row added by copying a refused one starts clean (no id of the
// original, no aria-invalid, no message). Runs after the rows' own click handlers above.
(function () {
  [["add-env", "env-rows"], ["add-mount", "mount-rows"]].forEach(function (ids) {
    const add = document.getElementById(ids[0]);
    const rows = document.getElementById(ids[1]);
    if (!add || !rows) return;
    add.addEventListener("click", function () {
      const row = rows.lastElementChild;
      if (!row) return;
      row.querySelectorAll(".field-error, .row-errors").forEach(function (el) { el.remove(); });
      row.querySelectorAll("[aria-invalid]").forEach(function (el) {
        el.removeAttribute("aria-invalid");
        el.removeAttribute("autofocus");
        el.removeAttribute("id");
        const rest = (el.getAttribute("aria-describedby") || "").split(" ")
          .filter(function (id) { return id && !id.endsWith("-error"); });
        if (rest.length) el.setAttribute("aria-describedby", rest.join(" "));
        else el.removeAttribute("aria-describedby");
      });
    });
  });
})();
