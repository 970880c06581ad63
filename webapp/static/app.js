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
  // The statuses each tab lists, from the page (tasks/domain/listing.py VIEWS: "sending" stays with scheduled).
  const VIEWS = JSON.parse(($("#views") || {}).textContent || "{}");
  const inView = (view, status) => (VIEWS[view] || []).includes(status);
  const POLL_MS = 5000, RETRY_LIVE_MS = 60000;
  // A row whose email left this tab shows its new badge this long, then goes.
  const LEAVE_MS = 1500;
  // A snapshot overtaken by live changes is not trusted for the counts, unless they are this old.
  const COUNTS_STALE_MS = 5000;

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
  // A ``datetime-local`` value: to the minute, as the pickers show it (``seconds`` for scripts and tests).
  function toLocalInput(date, seconds) {
    const p = (n) => String(n).padStart(2, "0");
    const text = date.getFullYear() + "-" + p(date.getMonth() + 1) + "-" + p(date.getDate()) + "T" + p(date.getHours()) + ":" + p(date.getMinutes());
    return seconds ? text + ":" + p(date.getSeconds()) : text;
  }
  // The first whole minute at least ``ms`` from now.
  function minuteAfter(ms) { return new Date(Math.ceil((Date.now() + ms) / 60000) * 60000); }

  // ---- counts: moved by each live change, in the same frame as its badge -----------------------
  // The status each email had when the counts on screen were last right. A change from a known
  // status moves the counts at once; from an unknown one, the server's snapshot says.
  const known = new Map();
  const unknown = new Set();
  let changes = 0;
  function shiftCounts(from, to) {
    Object.entries(VIEWS).forEach(([view, statuses]) => {
      const delta = (statuses.includes(to) ? 1 : 0) - (from && statuses.includes(from) ? 1 : 0);
      if (!delta) return;
      $$('[data-count-for="' + view + '"]').forEach((el) => { el.textContent = Math.max(0, (parseInt(el.textContent, 10) || 0) + delta); });
    });
  }
  function streamed(msg) {
    changes += 1;
    // Others on the page follow changes too (search.js: the saved searches' counts).
    document.dispatchEvent(new CustomEvent("reach:changed", { detail: msg }));
    let before = known.get(msg.email_id);
    if (before === undefined && msg.status === "sending") before = "scheduled";  // only a scheduled email is claimed
    if (before === undefined) unknown.add(msg.email_id);
    else { shiftCounts(before, msg.status); known.set(msg.email_id, msg.status); }
    if (msg.delivery) setDelivery(msg.email_id, msg.delivery, msg.bounce_type);
    updateEmail(msg.email_id, msg.status, msg.status === "sent" ? msg.sent_at || msg.at : msg.next_attempt_at, true);
    if (before === undefined || $("[data-batch-state]")) requestSnapshot(false);
    // A recurrence's page: its occurrences come and change (created ahead, then sent).
    if ($("#recurrence-live")) refreshFragments();
  }

  // ---- said to screen readers: live changes, gathered for a second so a burst is one sentence ----
  let said = [], sayTimer = null;
  function announce(text) {
    const region = $("#announcer");
    if (!region) return;
    said.push(text);
    if (sayTimer) return;
    sayTimer = setTimeout(() => {
      const all = said; said = []; sayTimer = null;
      const sentence = all.length === 1 ? all[0] : all.length + " changes: " + all.slice(0, 3).join(" ") + (all.length > 3 ? " …" : "");
      // Emptied first, so the same sentence twice is said twice.
      region.textContent = "";
      requestAnimationFrame(() => { region.textContent = sentence; });
    }, 1000);
  }
  const nameOf = (text) => "“" + ((text || "").trim() || "(no subject)") + "”";
  const statusName = (status) => (BADGES[status] ? BADGES[status][1] : status);

  // ---- badges and rows ------------------------------------------------------------------------
  function setBadge(badge, status) {
    if (!badge || !BADGES[status]) return;
    badge.className = "badge badge-" + status;
    $(".icon", badge).textContent = BADGES[status][0];
    $(".label", badge).textContent = BADGES[status][1];
  }
  // The provider's word on a sent email (delivered, deferred, bounced, complained): its small badge on each row.
  const DELIVERY = { delivered: "Delivered", deferred: "Deferred", bounced: "Bounced", complained: "Complained" };
  function setDelivery(id, delivery, bounceType) {
    if (!DELIVERY[delivery]) return;
    $$('li.row[data-email-id="' + CSS.escape(id) + '"] [data-delivery-badge]').forEach((el) => {
      el.hidden = false;
      el.className = "badge badge-small badge-delivery-" + delivery;
      el.textContent = DELIVERY[delivery] + (delivery === "bounced" && bounceType ? " (" + bounceType + ")" : "");
    });
  }
  const listView = () => (document.body.dataset.page === "list" ? document.body.dataset.view : null);
  // One email changed: its badge (and time) on every row showing it, its place in this tab, and the open detail.
  // ``at`` is the instant to show now (sent time, or the new due time), if any.
  function updateEmail(id, status, at, fromStream) {
    const rows = $$('li.row[data-email-id="' + CSS.escape(id) + '"]');
    const detail = $("#detail");
    const shown = rows.find((row) => row.dataset.status !== status) || (detail && detail.dataset.emailId === id && detail.dataset.status !== status ? detail : null);
    if (shown) announce(nameOf(($(".subject", shown) || {}).textContent) + " is now " + statusName(status) + ".");
    rows.forEach((row) => {
      if (at) { const ts = $("[data-ts]", row), rel = $("[data-rel]", row); if (ts) ts.dataset.ts = at; if (rel) rel.dataset.rel = at; renderTimes(row); }
      if (row.dataset.status !== status) {
        row.dataset.status = status; setBadge($("[data-badge]", row), status);
        row.classList.remove("flash-change"); void row.offsetWidth; row.classList.add("flash-change");
      }
      place(row, status);
    });
    if (!rows.length) enter(id, status);
    // A streamed event may change more than the status (a new time, an attempt): always refresh then.
    if (detail && detail.dataset.emailId === id && (fromStream || detail.dataset.status !== status)) refreshFragments();
  }
  // Keep a row in this tab only while its status belongs there: one that left shows its new badge, then goes.
  function place(row, status) {
    const view = listView();
    if (!view || inView(view, status)) { clearTimeout(row._leaving); row._leaving = null; row.classList.remove("leaving"); return; }
    if (row._leaving) return;
    row.classList.add("leaving");
    row._leaving = setTimeout(() => { row.remove(); showEmpty(); }, LEAVE_MS);
  }
  function showEmpty() {
    const empty = $("#empty"), list = $("#rows");
    if (list) list.hidden = !list.children.length;
    if (empty && list) empty.hidden = list.children.length > 0;
  }
  // An email not on screen whose status now belongs to this tab: fetch it and put it in its place.
  const entering = new Set();
  async function enter(id, status) {
    const view = listView();
    if (!id || !view || !inView(view, status) || document.body.dataset.searching === "1" || entering.has(id)) return;
    entering.add(id);
    try {
      const r = await api("GET", "/api/v1/emails/" + encodeURIComponent(id));
      // Emails of a batch are shown as their batch's row, not one by one.
      if (r.ok && !r.data.batch_id && inView(view, r.data.status) && addRow(r.data)) announce(nameOf(r.data.subject) + " is now " + statusName(r.data.status) + ".");
    } catch (e) { /* offline: the next reload shows it */ } finally { entering.delete(id); }
  }
  // Insert an email (the API's JSON) where it belongs on this page: newest first, by creation time.
  function addRow(email) {
    const list = $("#rows"), tpl = $("#row-template"), view = listView();
    if (!list || !tpl || !view || !inView(view, email.status) || $('li.row[data-email-id="' + CSS.escape(email.id) + '"]')) return false;
    const created = Date.parse(email.created_at), rows = $$(":scope > li.row", list);
    const after = rows.find((r) => Date.parse(r.dataset.created) < created);
    if (rows.length && document.body.dataset.firstPage !== "1" && created > Date.parse(rows[0].dataset.created)) return false;  // a newer page's
    if (!after && document.body.dataset.more === "1") return false;  // an older page's
    const row = tpl.content.firstElementChild.cloneNode(true);
    row.dataset.emailId = email.id; row.dataset.status = email.status; row.dataset.created = email.created_at;
    $("a", row).href = "/emails/" + encodeURIComponent(email.id);
    $(".subject", row).textContent = email.subject || "(no subject)";
    $(".to", row).textContent = "to " + email.to.join(", ");
    const at = email.status === "sent" && email.sent_at ? email.sent_at : email.next_attempt_at;
    $("[data-ts]", row).dataset.ts = at; $("[data-rel]", row).dataset.rel = at;
    setBadge($("[data-badge]", row), email.status);
    list.insertBefore(row, after || null); showEmpty();
    renderTimes(row); row.classList.add("flash-change");
    return true;
  }

  // ---- parts of the page re-rendered by the server (the same templates, nothing written twice) ----
  let fragmentsBusy = false, fragmentsAgain = false;
  async function refreshFragments() {
    if (fragmentsBusy) { fragmentsAgain = true; return; }
    fragmentsBusy = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.ok) {
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const swap = (current, fresh) => { if (current && fresh) { current.replaceWith(document.adoptNode(fresh)); renderTimes(fresh); } };
        swap($("#detail"), doc.getElementById("detail"));
        swap($("#recurrence-live"), doc.getElementById("recurrence-live"));
        $$("[data-batch-state]").forEach((box) => swap(box, $('[data-batch-state][data-batch-id="' + CSS.escape(box.dataset.batchId) + '"]', doc)));
        wireLocalTimeForms();
      }
    } catch (e) { /* offline: the next change or poll tries again */ } finally {
      fragmentsBusy = false;
      // A batch sending fast changes often: at most about four re-renders a second.
      if (fragmentsAgain) { fragmentsAgain = false; setTimeout(refreshFragments, 250); }
    }
  }
  // A batch's progress, its next send and what can still be cancelled.
  const batchState = (b) => [b.sent, b.pending, b.failed, b.uncertain, b.cancelled, b.next_at || ""].join("|");

  // ---- snapshots: counts and statuses from the server (after an unknown change, and when polling) ----
  let snapBusy = false, snapAgain = false, snapAgainPoll = false, countsAt = Date.now();
  function requestSnapshot(poll) {
    if (snapBusy) { snapAgain = true; snapAgainPoll = snapAgainPoll || poll; return; }
    snapshot(poll);
  }
  async function snapshot(poll) {
    snapBusy = true;
    const started = changes, asked = [...unknown];
    const ids = [...new Set($$("li.row[data-email-id]").map((r) => r.dataset.emailId).concat(asked))].filter(Boolean);
    const detail = $("#detail"); if (detail) ids.unshift(detail.dataset.emailId);
    const batches = [...new Set($$("[data-batch-id]").map((b) => b.dataset.batchId))];
    const q = "/live/snapshot?ids=" + encodeURIComponent(ids.slice(0, 200).join(",")) + "&batches=" + encodeURIComponent(batches.slice(0, 50).join(","));
    try {
      const r = await api("GET", q);
      // Counts read before a live change arrived may not include it: the snapshot that change asked for will.
      if (r.ok) applySnapshot(r.data, poll, started === changes || Date.now() - countsAt > COUNTS_STALE_MS, asked);
    } catch (e) { /* offline: try again later */ } finally {
      snapBusy = false;
      if (snapAgain) { const p = snapAgainPoll; snapAgain = snapAgainPoll = false; snapshot(p); }
    }
  }
  function applySnapshot(data, poll, fresh, asked) {
    if (fresh) {
      countsAt = Date.now();
      Object.entries(data.counts || {}).forEach(([view, n]) => { $$('[data-count-for="' + view + '"]').forEach((el) => { el.textContent = n; }); });
      (data.emails || []).forEach((e) => known.set(e.id, e.status));
      asked.forEach((id) => unknown.delete(id));
    }
    if (poll) (data.emails || []).forEach((e) => updateEmail(e.id, e.status, e.status === "sent" ? e.sent_at : null, false));
    let stale = false;
    (data.batches || []).forEach((b) => {
      $$('[data-batch-id="' + CSS.escape(b.id) + '"]').forEach((box) => {
        const text = $("[data-batch-progress]", box); if (text) text.textContent = b.sent + " of " + b.total + " sent";
        const bar = $("[data-batch-bar]", box); if (bar) { bar.max = b.total; bar.value = b.sent; }
        if (box.dataset.batchState !== undefined && box.dataset.batchState !== batchState(b)) stale = true;
      });
    });
    if (stale) refreshFragments();
  }

  // ---- live: Server-Sent Events, else polling (said discreetly) ------------------------------
  const indicator = $("#live-status");
  function setLive(state) {
    if (!indicator) return;
    if (state === "polling" && indicator.dataset.state !== "polling") announce("Live updates are unavailable; the page checks every 5 seconds.");
    indicator.dataset.state = state;
    $(".live-text", indicator).textContent = state === "live" ? "Live" : state === "polling" ? "Updates every 5 s" : "Connecting…";
    indicator.title = state === "polling" ? "Live updates are unavailable; checking every 5 seconds instead." : "Live updates";
  }
  let source = null, pollTimer = null, retryTimer = null, failures = 0;
  function startLive() {
    if (!window.EventSource) return startPolling();
    source = new EventSource("/live/stream");
    source.onopen = () => { failures = 0; stopPolling(); setLive("live"); requestSnapshot(true); };
    source.onmessage = (ev) => {
      let msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.email_id) streamed(msg);
      // A batch-wide change (created, cancelled) names no single email: refresh every row on screen.
      else { changes += 1; document.dispatchEvent(new CustomEvent("reach:changed", { detail: msg })); requestSnapshot(true); }
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
    if (!pollTimer) pollTimer = setInterval(() => requestSnapshot(true), POLL_MS);
    requestSnapshot(true);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => { failures = 0; startLive(); }, RETRY_LIVE_MS);
  }
  function stopPolling() { clearInterval(pollTimer); pollTimer = null; clearTimeout(retryTimer); }

  // ---- forms: errors beside their field, outlined --------------------------------------------
  function setInvalid(input, invalid) {
    input.classList.toggle("invalid", invalid);
    if (invalid) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }
  function clearErrors(form) {
    $$("[data-error-for]", form).forEach((el) => { el.textContent = ""; });
    $$(".invalid, [aria-invalid]", form).forEach((el) => setInvalid(el, false));
  }
  // An error names the API's field; the input showing it has that name, or says so in data-field.
  function showErrors(form, error) {
    const items = (error.details && error.details.length) ? error.details : [{ field: error.field, message: error.message }];
    items.forEach((item) => {
      const field = item.field || "_form";
      const slot = $('[data-error-for="' + CSS.escape(field) + '"]', form) || $('[data-error-for="_form"]', form);
      const text = item.message.replace(new RegExp("^" + field + ": "), "");
      slot.textContent = slot.textContent ? slot.textContent + " " + text : text;
      const input = $('[name="' + CSS.escape(field) + '"], [data-field="' + CSS.escape(field) + '"]', form); if (input) setInvalid(input, true);
    });
  }

  // ---- a confirmation before what cannot be undone (forms with data-confirm) -------------------
  function confirmDialog() {
    let dialog = $("#confirm-dialog");
    if (dialog) return dialog;
    dialog = document.createElement("dialog"); dialog.id = "confirm-dialog"; dialog.className = "modal confirm";
    dialog.setAttribute("aria-labelledby", "confirm-text");
    const form = document.createElement("form"); form.method = "dialog";
    const text = document.createElement("p"); text.id = "confirm-text";
    const foot = document.createElement("footer"); foot.className = "modal-foot";
    const no = document.createElement("button"); no.className = "btn"; no.value = "no";
    const yes = document.createElement("button"); yes.className = "btn danger"; yes.value = "yes";
    foot.append(no, yes); form.append(text, foot); dialog.append(form); document.body.append(dialog);
    return dialog;
  }
  function wireConfirmations() {
    // Delegated, so forms that live updates re-render keep asking.
    document.addEventListener("submit", (ev) => {
      const form = ev.target;
      if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
      ev.preventDefault();
      const dialog = confirmDialog(), no = $('[value="no"]', dialog);
      $("#confirm-text", dialog).textContent = form.dataset.confirm;
      $('[value="yes"]', dialog).textContent = form.dataset.confirmYes || "Yes";
      no.textContent = form.dataset.confirmNo || "No";
      dialog.returnValue = "";
      dialog.onclose = () => { if (dialog.returnValue === "yes") form.submit(); };
      dialog.showModal(); no.focus();
    }, true);
  }

  // ---- compose ------------------------------------------------------------------------------
  function splitAddresses(text) { return text.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean); }
  function wireCompose() {
    const dialog = $("#compose"), form = $("#compose-form");
    if (!dialog || !form) return;
    let key = newKey();
    const when = $("#c-when"), hint = $("#c-when-hint"), now = $("#c-now"), submit = $("#c-submit");
    const subject = $("#c-subject"), subjectWarn = $("#c-subject-warn");
    // An empty subject is allowed (the API takes it) but asked about once, as mail clients do.
    let noSubjectConfirmed = false;
    const resetSubject = () => { noSubjectConfirmed = false; subjectWarn.textContent = ""; submit.textContent = "Schedule"; };
    // The hint says when it goes, and warns as soon as the time picked has passed.
    const showHint = () => {
      hint.classList.remove("warn");
      if (now.checked) { hint.textContent = "Sends as soon as you press Schedule."; when.disabled = true; setInvalid(when, false); return; }
      when.disabled = false;
      const d = new Date(when.value);
      if (!when.value || isNaN(d)) { hint.textContent = ""; return; }
      const past = d.getTime() < Date.now();
      if (past) {
        hint.textContent = "This time is in the past (" + relative(d) + "). Pick a later time or Send now.";
        hint.classList.add("warn");
      } else hint.textContent = "Sends " + dateFmt.format(d) + " (" + zone + ") — " + relative(d) + ".";
      setInvalid(when, past);
    };
    $$("[data-open-compose]").forEach((b) => b.addEventListener("click", () => {
      if (!when.value) when.value = toLocalInput(minuteAfter(5 * 60000));
      showHint(); dialog.showModal(); $("#c-to").focus();
    }));
    $$("[data-close-compose]").forEach((b) => b.addEventListener("click", () => dialog.close()));
    $$("[data-quick]", form).forEach((b) => b.addEventListener("click", () => {
      let d = new Date(); now.checked = false;
      if (b.dataset.quick === "5m") d = minuteAfter(5 * 60000);
      else {
        const add = b.dataset.quick === "tomorrow9" ? 1 : ((8 - d.getDay()) % 7 || 7);
        d.setDate(d.getDate() + add); d.setHours(9, 0, 0, 0);
      }
      when.value = toLocalInput(d); showHint();
      $$("[data-quick]", form).forEach((x) => x.classList.toggle("selected", x === b));
    }));
    when.addEventListener("input", () => { $$("[data-quick]", form).forEach((x) => x.classList.remove("selected")); showHint(); });
    now.addEventListener("change", showHint);
    subject.addEventListener("input", resetSubject);
    setInterval(() => { if (dialog.open) showHint(); }, 15000);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      clearErrors(form);
      if (!subject.value.trim() && !noSubjectConfirmed) {
        noSubjectConfirmed = true;
        subjectWarn.textContent = "This email has no subject. Add one, or press “Schedule without subject” to send it as it is.";
        submit.textContent = "Schedule without subject";
        subject.focus();
        return;
      }
      const payload = {
        to: splitAddresses(form.to.value), subject: form.subject.value, body_text: form.body_text.value, time_zone: zone,
      };
      if (form.cc.value.trim()) payload.cc = splitAddresses(form.cc.value);
      if (form.bcc.value.trim()) payload.bcc = splitAddresses(form.bcc.value);
      if (now.checked) payload.send_now = true;
      else if (window.reachRepeat && window.reachRepeat.active()) { /* the rule says when */ }
      else {
        const d = new Date(when.value);
        if (!when.value || isNaN(d)) { showErrors(form, { field: "send_at", message: "Pick a date and time, or Send now." }); return; }
        payload.send_at = d.toISOString();
      }
      if (window.reachRepeat && window.reachRepeat.active()) {
        // A recurring email (recurring.js): saved, then its page is shown.
        submit.disabled = true;
        try { if (await window.reachRepeat.submit(form, payload, key)) key = newKey(); }
        catch (e) { showErrors(form, { field: "_form", message: "The server could not be reached. Try again." }); }
        finally { submit.disabled = false; }
        return;
      }
      const label = submit.textContent;
      submit.disabled = true; submit.textContent = "Scheduling…";
      try {
        const r = await api("POST", "/api/v1/emails", payload, { "Idempotency-Key": key });
        if (r.ok) {
          key = newKey(); form.reset(); when.value = ""; resetSubject(); dialog.close();
          $$("[data-quick]", form).forEach((x) => x.classList.remove("selected"));
          if (r.status === 201 && !known.has(r.data.id)) { shiftCounts(null, r.data.status); known.set(r.data.id, r.data.status); }
          addRow(r.data);
          return;
        }
        if (r.data && r.data.error) {
          showErrors(form, r.data.error);
          // The server's sentence (with the moment as they read it) replaces the early warning.
          if ($('[data-error-for="send_at"]', form).textContent) { hint.textContent = ""; hint.classList.remove("warn"); }
        } else showErrors(form, { field: "_form", message: "Could not schedule (HTTP " + r.status + "). Try again." });
      } catch (e) {
        showErrors(form, { field: "_form", message: "The server could not be reached. Your email was not lost: try again." });
      } finally {
        submit.disabled = false;
        if (submit.textContent === "Scheduling…") submit.textContent = dialog.open ? label : "Schedule";
      }
    });
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

  window.reach = { api, newKey, zone, relative, dateFmt, toLocalInput, showErrors, clearErrors, setInvalid };
  document.addEventListener("DOMContentLoaded", () => {
    renderTimes();
    // The rows came with the counts: their statuses are known.
    $$("li.row[data-email-id]").forEach((row) => known.set(row.dataset.emailId, row.dataset.status));
    setInterval(() => $$("[data-rel]").forEach((el) => { const d = new Date(el.dataset.rel); if (el.dataset.rel && !isNaN(d)) el.textContent = relative(d); }), 15000);
    wireCompose();
    wireLocalTimeForms();
    wireConfirmations();
    if (document.body.dataset.signedIn === "1") { setLive("connecting"); startLive(); }
  });
})();
