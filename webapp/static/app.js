/* Reach D. Box dashboard: local times, the compose modal, live updates (SSE, else polling).
   Plain JavaScript, no build step. Everything user-provided is inserted as text, never HTML. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
  const dateFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
  const preciseFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  // Each status's icon and name, from the page (webapp/dashboard.py BADGES).
  const BADGES = JSON.parse(($("#badges") || {}).textContent || "{}");
  const POLL_MS = 5000, RETRY_LIVE_MS = 60000;

  function csrfToken() { const m = $('meta[name="csrf-token"]'); return m ? m.content : ""; }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16); crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, url, body, headers) {
    const init = { method, credentials: "same-origin", headers: Object.assign({ "Accept": "application/json", "X-CSRF-Token": csrfToken() }, headers || {}) };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    const response = await fetch(url, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  // ---- times: the browser's zone, and "in 3 min" -------------------------------------------
  function relative(date) {
    const s = (date.getTime() - Date.now()) / 1000, a = Math.abs(s);
    if (a < 45) return rtf.format(Math.round(s), "second");
    if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
    if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
    return rtf.format(Math.round(s / 86400), "day");
  }
  function renderTimes(root) {
    $$("[data-ts]", root).forEach((el) => {
      const d = new Date(el.dataset.ts); if (isNaN(d)) return;
      el.textContent = (el.classList.contains("precise") ? preciseFmt : dateFmt).format(d); el.title = d.toISOString() + " · shown in " + zone;
    });
    $$("[data-rel]", root).forEach((el) => {
      const d = new Date(el.dataset.rel); el.textContent = isNaN(d) || !el.dataset.rel ? "" : relative(d);
    });
    $$("[data-browser-zone]", root).forEach((el) => { el.textContent = "(" + zone + ")"; });
    $$("[data-browser-zone-input]", root).forEach((el) => { el.value = zone; });
  }
  function toLocalInput(date) {
    const p = (n) => String(n).padStart(2, "0");
    return date.getFullYear() + "-" + p(date.getMonth() + 1) + "-" + p(date.getDate()) + "T" + p(date.getHours()) + ":" + p(date.getMinutes()) + ":" + p(date.getSeconds());
  }

  // ---- badges and rows ------------------------------------------------------------------------
  function setBadge(badge, status) {
    if (!badge || !BADGES[status]) return;
    badge.className = "badge badge-" + status;
    $(".icon", badge).textContent = BADGES[status][0];
    $(".label", badge).textContent = BADGES[status][1];
  }
  // One email changed: its badge (and time) on every row showing it, and the open detail.
  // ``at`` is the instant to show now (sent time, or the new due time), if any.
  function updateEmail(id, status, at, fromStream) {
    $$('li.row[data-email-id="' + CSS.escape(id) + '"]').forEach((row) => {
      if (at) { const ts = $("[data-ts]", row), rel = $("[data-rel]", row); if (ts) ts.dataset.ts = at; if (rel) rel.dataset.rel = at; renderTimes(row); }
      if (row.dataset.status === status) return;
      row.dataset.status = status; setBadge($("[data-badge]", row), status);
      row.classList.remove("flash-change"); void row.offsetWidth; row.classList.add("flash-change");
    });
    const detail = $("#detail");
    // A streamed event may change more than the status (a new time, an attempt): always refresh then.
    if (detail && detail.dataset.emailId === id && (fromStream || detail.dataset.status !== status)) refreshDetail();
  }
  let detailBusy = false, detailAgain = false;
  async function refreshDetail() {
    if (detailBusy) { detailAgain = true; return; }
    detailBusy = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.ok) {
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.getElementById("detail"), current = $("#detail");
        if (fresh && current) { current.replaceWith(document.adoptNode(fresh)); renderTimes($("#detail")); wireLocalTimeForms(); }
      }
    } finally {
      detailBusy = false;
      if (detailAgain) { detailAgain = false; refreshDetail(); }
    }
  }
  function applySnapshot(data, poll) {
    Object.entries(data.counts || {}).forEach(([view, n]) => { $$('[data-count-for="' + view + '"]').forEach((el) => { el.textContent = n; }); });
    if (poll) (data.emails || []).forEach((e) => updateEmail(e.id, e.status, e.status === "sent" ? e.sent_at : null, false));
    (data.batches || []).forEach((b) => {
      $$('[data-batch-id="' + CSS.escape(b.id) + '"]').forEach((box) => {
        const text = $("[data-batch-progress]", box); if (text) text.textContent = b.sent + " of " + b.total + " sent";
        const bar = $("[data-batch-bar]", box); if (bar) { bar.max = b.total; bar.value = b.sent; }
      });
    });
  }
  let snapTimer = null;
  function scheduleSnapshot(poll) {
    clearTimeout(snapTimer);
    snapTimer = setTimeout(() => snapshot(poll), poll ? 0 : 300);
  }
  async function snapshot(poll) {
    const ids = [...new Set($$("li.row[data-email-id]").map((r) => r.dataset.emailId))].filter(Boolean);
    const detail = $("#detail"); if (detail) ids.push(detail.dataset.emailId);
    const batches = $$("[data-batch-id]").map((b) => b.dataset.batchId);
    const q = "/live/snapshot?ids=" + encodeURIComponent(ids.slice(0, 200).join(",")) + "&batches=" + encodeURIComponent([...new Set(batches)].slice(0, 50).join(","));
    try { const r = await api("GET", q); if (r.ok) applySnapshot(r.data, poll); } catch (e) { /* offline: try again later */ }
  }

  // ---- live: Server-Sent Events, else polling (said discreetly) ------------------------------
  const indicator = $("#live-status");
  function setLive(state) {
    if (!indicator) return;
    indicator.dataset.state = state;
    $(".live-text", indicator).textContent = state === "live" ? "Live" : state === "polling" ? "Updates every 5 s" : "Connecting…";
    indicator.title = state === "polling" ? "Live updates are unavailable; checking every 5 seconds instead." : "Live updates";
  }
  let source = null, pollTimer = null, retryTimer = null, failures = 0;
  function startLive() {
    if (!window.EventSource) return startPolling();
    source = new EventSource("/live/stream");
    source.onopen = () => { failures = 0; stopPolling(); setLive("live"); scheduleSnapshot(true); };
    source.onmessage = (ev) => {
      let msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.email_id) updateEmail(msg.email_id, msg.status, msg.status === "sent" ? msg.at : msg.next_attempt_at, true);
      // A batch-wide change (created, cancelled) names no single email: refresh every row on screen.
      scheduleSnapshot(!msg.email_id);
    };
    source.addEventListener("unavailable", () => { source.close(); startPolling(); });
    source.onerror = () => {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= 3) { source.close(); startPolling(); }
      else setLive("connecting");
    };
  }
  function startPolling() {
    setLive("polling");
    if (!pollTimer) pollTimer = setInterval(() => snapshot(true), POLL_MS);
    snapshot(true);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => { failures = 0; startLive(); }, RETRY_LIVE_MS);
  }
  function stopPolling() { clearInterval(pollTimer); pollTimer = null; clearTimeout(retryTimer); }

  // ---- compose ------------------------------------------------------------------------------
  function splitAddresses(text) { return text.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean); }
  function clearErrors(form) {
    $$("[data-error-for]", form).forEach((el) => { el.textContent = ""; });
    $$(".invalid", form).forEach((el) => el.classList.remove("invalid"));
  }
  function showErrors(form, error) {
    const items = (error.details && error.details.length) ? error.details : [{ field: error.field, message: error.message }];
    items.forEach((item) => {
      const field = item.field || "_form";
      const slot = $('[data-error-for="' + CSS.escape(field) + '"]', form) || $('[data-error-for="_form"]', form);
      const text = item.message.replace(new RegExp("^" + field + ": "), "");
      slot.textContent = slot.textContent ? slot.textContent + " " + text : text;
      const input = $('[name="' + CSS.escape(field) + '"]', form); if (input) input.classList.add("invalid");
    });
  }
  function wireCompose() {
    const dialog = $("#compose"), form = $("#compose-form");
    if (!dialog || !form) return;
    let key = newKey();
    const when = $("#c-when"), hint = $("#c-when-hint"), now = $("#c-now"), submit = $("#c-submit");
    const showHint = () => {
      if (now.checked) { hint.textContent = "Sends as soon as you press Schedule."; when.disabled = true; return; }
      when.disabled = false;
      const d = new Date(when.value);
      hint.textContent = when.value && !isNaN(d) ? "Sends " + dateFmt.format(d) + " (" + zone + ") — " + relative(d) : "";
    };
    $$("[data-open-compose]").forEach((b) => b.addEventListener("click", () => {
      if (!when.value) when.value = toLocalInput(new Date(Date.now() + 5 * 60000));
      showHint(); dialog.showModal(); $("#c-to").focus();
    }));
    $$("[data-close-compose]").forEach((b) => b.addEventListener("click", () => dialog.close()));
    $$("[data-quick]", form).forEach((b) => b.addEventListener("click", () => {
      const d = new Date(); now.checked = false;
      if (b.dataset.quick === "5m") d.setTime(Date.now() + 5 * 60000);
      else {
        const add = b.dataset.quick === "tomorrow9" ? 1 : ((8 - d.getDay()) % 7 || 7);
        d.setDate(d.getDate() + add); d.setHours(9, 0, 0, 0);
      }
      when.value = toLocalInput(d); showHint();
      $$("[data-quick]", form).forEach((x) => x.classList.toggle("selected", x === b));
    }));
    when.addEventListener("input", () => { $$("[data-quick]", form).forEach((x) => x.classList.remove("selected")); showHint(); });
    now.addEventListener("change", showHint);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      clearErrors(form);
      const payload = {
        to: splitAddresses(form.to.value), subject: form.subject.value, body_text: form.body_text.value, time_zone: zone,
      };
      if (form.cc.value.trim()) payload.cc = splitAddresses(form.cc.value);
      if (form.bcc.value.trim()) payload.bcc = splitAddresses(form.bcc.value);
      if (now.checked) payload.send_now = true;
      else {
        const d = new Date(when.value);
        if (!when.value || isNaN(d)) { showErrors(form, { field: "send_at", message: "pick a date and time, or Send now" }); return; }
        payload.send_at = d.toISOString();
      }
      submit.disabled = true; submit.textContent = "Scheduling…";
      try {
        const r = await api("POST", "/api/v1/emails", payload, { "Idempotency-Key": key });
        if (r.ok) {
          key = newKey(); form.reset(); when.value = ""; dialog.close();
          $$("[data-quick]", form).forEach((x) => x.classList.remove("selected"));
          addRow(r.data); scheduleSnapshot(false);
        } else if (r.data && r.data.error) showErrors(form, r.data.error);
        else showErrors(form, { field: "_form", message: "Could not schedule (HTTP " + r.status + "). Try again." });
      } catch (e) {
        showErrors(form, { field: "_form", message: "The server could not be reached. Your email was not lost: try again." });
      } finally { submit.disabled = false; submit.textContent = "Schedule"; }
    });
  }
  function addRow(email) {
    const list = $("#rows"), tpl = $("#row-template");
    const view = document.body.dataset.view;
    if (!list || !tpl || !["scheduled", "all"].includes(view) || $('li.row[data-email-id="' + CSS.escape(email.id) + '"]')) return;
    const row = tpl.content.firstElementChild.cloneNode(true);
    row.dataset.emailId = email.id; row.dataset.status = email.status;
    $("a", row).href = "/emails/" + encodeURIComponent(email.id);
    $(".subject", row).textContent = email.subject || "(no subject)";
    $(".to", row).textContent = "to " + email.to.join(", ");
    $("[data-ts]", row).dataset.ts = email.next_attempt_at; $("[data-rel]", row).dataset.rel = email.next_attempt_at;
    setBadge($("[data-badge]", row), email.status);
    list.prepend(row); const empty = $("#empty"); if (empty) empty.remove();
    renderTimes(row); row.classList.add("flash-change");
  }

  // ---- reschedule: a picker in the browser's zone --------------------------------------------
  function wireLocalTimeForms() {
    $$("[data-local-time-form]").forEach((form) => {
      if (form.dataset.wired) return; form.dataset.wired = "1";
      const local = $('input[name="local"]', form);
      if (local.dataset.initial) { const d = new Date(local.dataset.initial); if (!isNaN(d)) local.value = toLocalInput(d); }
      form.addEventListener("submit", () => {
        const d = new Date(local.value);
        if (!isNaN(d)) form.send_at.value = d.toISOString();
      });
    });
    renderTimes();
  }

  window.reach = { api, newKey, zone, relative, dateFmt, toLocalInput, showErrors, clearErrors };
  document.addEventListener("DOMContentLoaded", () => {
    renderTimes();
    setInterval(() => $$("[data-rel]").forEach((el) => { const d = new Date(el.dataset.rel); if (el.dataset.rel && !isNaN(d)) el.textContent = relative(d); }), 15000);
    wireCompose();
    wireLocalTimeForms();
    if (document.body.dataset.signedIn === "1") { setLive("connecting"); startLive(); }
  });
})();
