/* Reach D. Box: the "Repeat" fields, in the compose form and in a recurrence's edit form.
   Builds a preset (or a raw cron) from the form, shows the rule in plain words and its next
   five occurrences (asked of POST /api/v1/recurrences/preview as the form changes). The
   compose form saves the recurring email (POST /api/v1/recurrences) when submitted with a
   repeat chosen; the edit form is an ordinary form post (the server applies it).
   Plain JavaScript; everything user-provided is inserted as text, never HTML. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const browserZone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";

  function kind(form) { const k = form && $('[name="repeat"]', form); return k ? k.value : ""; }
  // The rule's zone: the edit form's (the recurrence's), else the browser's.
  function zoneOf(form) { return (form.time_zone && form.time_zone.value.trim()) || browserZone; }

  // How far zone ``tz`` is ahead of UTC at instant ``ms`` (ms), or null for a zone the browser does not know.
  function offset(ms, tz) {
    let parts;
    try {
      parts = new Intl.DateTimeFormat("en-US", { timeZone: tz, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" }).formatToParts(new Date(ms));
    } catch (e) { return null; }
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
  }
  // "Until" a date: through the end of that day in the rule's zone.
  function endOfDay(day, tz) {
    const [y, m, d] = day.split("-").map(Number);
    if (!y || !m || !d) return null;
    const wall = Date.UTC(y, m - 1, d, 23, 59, 59);
    let at = wall;
    for (let i = 0; i < 2; i++) { const off = offset(at, tz); if (off === null) return new Date(day + "T23:59:59"); at = wall - off; }
    return new Date(at);
  }

  // The rule's fields of the API's body, from the form.
  function rule(form) {
    const k = kind(form), tz = zoneOf(form), out = { time_zone: tz };
    const time = form.repeat_time.value || "09:00";
    if (k === "cron") out.cron = form.cron.value;
    else if (k === "hourly") out.preset = { kind: "hourly", every: Number(form.repeat_every.value), minute: Number(form.repeat_minute.value || 0) };
    else if (k === "weekly") out.preset = { kind: "weekly", time, days: $$('input[name="repeat_day"]:checked', form).map((c) => c.value) };
    else if (k === "monthly") {
      const [a, b] = form.repeat_monthly.value.split(":");
      out.preset = a === "day" ? { kind: "monthly", time, day: b === "last" ? "last" : Number(b) }
        : { kind: "monthly", time, weekday: b, nth: a === "last" ? "last" : Number(a) };
    } else out.preset = { kind: k, time };
    const until = form.repeat_until;
    if (until.value) {
      // The end as stored while its day is unchanged (the edit form keeps it), else the day's last second.
      if (until.dataset.keep && until.value === until.dataset.keepDate && tz === until.form.dataset.zoneWas) out.ends_at = until.dataset.keep;
      else { const end = endOfDay(until.value, tz); if (end && !isNaN(end)) out.ends_at = end.toISOString(); }
    }
    if (form.count.value) out.count = Number(form.count.value);
    if (form.starts_at && form.starts_at.value) out.starts_at = form.starts_at.value; // the edit form's recurrence
    return out;
  }

  function wire(form) {
    const fieldset = $("fieldset.repeat", form), summary = $(".repeat-summary", form), list = $(".repeat-preview", form);
    const compose = form.id === "compose-form";
    const fmt = () => new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZone: offset(0, zoneOf(form)) === null ? browserZone : zoneOf(form) });
    let timer = null, asked = 0;

    async function preview() {
      const mine = ++asked;
      const r = await window.reach.api("POST", "/api/v1/recurrences/preview?n=5", rule(form));
      if (mine !== asked) return; // overtaken by a later change
      window.reach.clearErrors(fieldset);
      list.textContent = "";
      if (!r.ok) {
        summary.textContent = "";
        if (r.data && r.data.error) window.reach.showErrors(form, r.data.error);
        return;
      }
      summary.textContent = r.data.summary;
      const shown = fmt();
      r.data.occurrences.forEach((iso) => {
        const li = document.createElement("li"); const t = document.createElement("time");
        t.dateTime = iso; t.textContent = shown.format(new Date(iso)); li.append(t); list.append(li);
      });
    }

    function show() {
      const k = kind(form), options = $(".repeat-options", form), when = $("fieldset.when", form);
      options.hidden = !k;
      if (when) when.hidden = !!k;
      $$("[data-repeat-for]", form).forEach((el) => { el.hidden = !el.dataset.repeatFor.split(" ").includes(k); });
      if (compose) $("#c-submit").textContent = k ? "Save recurring email" : "Schedule";
      if (k) { clearTimeout(timer); timer = setTimeout(preview, 250); }
    }

    // Choosing "every week" ticks today, so the rule says something from the start.
    function chose() {
      const days = $$('input[name="repeat_day"]', form);
      if (kind(form) === "weekly" && !days.some((c) => c.checked)) days[(new Date().getDay() + 6) % 7].checked = true;
      show();
    }

    if (form.time_zone) form.dataset.zoneWas = form.time_zone.value.trim();
    $('[name="repeat"]', form).addEventListener("change", chose);
    $(".repeat-options", form).addEventListener("input", show);
    $(".repeat-options", form).addEventListener("change", show);
    form.addEventListener("reset", () => setTimeout(show, 0));
    show();
    return chose;
  }

  // Called by the compose form's submit (app.js) when a repeat is chosen.
  async function submit(form, payload, key) {
    const body = Object.assign({}, payload, rule(form));
    delete body.send_at; delete body.send_now;
    const r = await window.reach.api("POST", "/api/v1/recurrences", body, { "Idempotency-Key": key });
    if (r.ok) { location.assign("/recurring/" + encodeURIComponent(r.data.id)); return true; }
    if (r.data && r.data.error) window.reach.showErrors(form, r.data.error);
    else window.reach.showErrors(form, { field: "_form", message: "Could not save (HTTP " + r.status + "). Try again." });
    return false;
  }

  window.reachRepeat = { active: () => !!kind($("#compose-form")), submit };
  document.addEventListener("DOMContentLoaded", () => {
    $$("[data-browser-zone-name]").forEach((el) => { el.textContent = browserZone; });
    const compose = $("#compose-form");
    if (compose && $("fieldset.repeat", compose)) {
      const chose = wire(compose), select = $('[name="repeat"]', compose);
      // "New recurring email" opens the compose form with a repeat already chosen.
      $$("[data-open-compose][data-repeat]").forEach((b) => b.addEventListener("click", () => { select.value = b.dataset.repeat; chose(); }));
    }
    const edit = $("#recurrence-edit-form");
    if (edit) wire(edit);
  });
})();
