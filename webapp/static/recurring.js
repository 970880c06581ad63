/* Reach D. Box: "Repeat" in the compose form. Builds a preset (or a raw cron) from the
   form, shows the rule in plain words and its next five occurrences (asked of
   POST /api/v1/recurrences/preview as the form changes), and saves the recurring email
   (POST /api/v1/recurrences) when the compose form is submitted with a repeat chosen.
   Plain JavaScript; everything user-provided is inserted as text, never HTML. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
  const fmt = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZone: zone });

  function kind() { const k = $("#c-repeat-kind"); return k ? k.value : ""; }

  // The rule's fields of the API's body, from the form.
  function rule(form) {
    const k = kind(), out = { time_zone: zone };
    const time = form.repeat_time.value || "09:00";
    if (k === "cron") out.cron = form.cron.value;
    else if (k === "hourly") out.preset = { kind: "hourly", every: Number(form.repeat_every.value), minute: Number(form.repeat_minute.value || 0) };
    else if (k === "weekly") out.preset = { kind: "weekly", time, days: $$('input[name="repeat_day"]:checked', form).map((c) => c.value) };
    else if (k === "monthly") {
      const [a, b] = form.repeat_monthly.value.split(":");
      out.preset = a === "day" ? { kind: "monthly", time, day: b === "last" ? "last" : Number(b) }
        : { kind: "monthly", time, weekday: b, nth: a === "last" ? "last" : Number(a) };
    } else out.preset = { kind: k, time };
    if (form.repeat_until.value) {
      // Until a date: through the end of that day, in the browser's zone.
      const end = new Date(form.repeat_until.value + "T23:59:59");
      if (!isNaN(end)) out.ends_at = end.toISOString();
    }
    if (form.count.value) out.count = Number(form.count.value);
    return out;
  }

  let timer = null, asked = 0;
  async function preview(form) {
    const summary = $("#c-repeat-summary"), list = $("#c-repeat-preview");
    const mine = ++asked;
    window.reach.clearErrors($("#c-repeat"));
    const r = await window.reach.api("POST", "/api/v1/recurrences/preview?n=5", rule(form));
    if (mine !== asked) return; // overtaken by a later change
    list.textContent = "";
    if (!r.ok) {
      summary.textContent = "";
      if (r.data && r.data.error) window.reach.showErrors(form, r.data.error);
      return;
    }
    summary.textContent = r.data.summary;
    r.data.occurrences.forEach((iso) => {
      const li = document.createElement("li"); const t = document.createElement("time");
      t.dateTime = iso; t.textContent = fmt.format(new Date(iso)); li.append(t); list.append(li);
    });
  }

  // Choosing "every week" ticks today, so the rule says something from the start.
  function chose(form) {
    const days = $$('input[name="repeat_day"]', form);
    if (kind() === "weekly" && !days.some((c) => c.checked)) days[(new Date().getDay() + 6) % 7].checked = true;
    show(form);
  }

  function show(form) {
    const k = kind(), options = $(".repeat-options", form), when = $("fieldset.when", form), submit = $("#c-submit");
    options.hidden = !k;
    when.hidden = !!k;
    $$("[data-repeat-for]", form).forEach((el) => { el.hidden = !el.dataset.repeatFor.split(" ").includes(k); });
    submit.textContent = k ? "Save recurring email" : "Schedule";
    if (k) { clearTimeout(timer); timer = setTimeout(() => preview(form), 250); }
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

  window.reachRepeat = { active: () => !!kind(), submit };
  document.addEventListener("DOMContentLoaded", () => {
    const form = $("#compose-form"), select = $("#c-repeat-kind");
    if (!form || !select) return;
    $$("[data-browser-zone-name]").forEach((el) => { el.textContent = zone; });
    select.addEventListener("change", () => chose(form));
    $(".repeat-options", form).addEventListener("input", () => show(form));
    $(".repeat-options", form).addEventListener("change", () => show(form));
    // "New recurring email" opens the compose form with a repeat already chosen.
    $$("[data-open-compose][data-repeat]").forEach((b) => b.addEventListener("click", () => { select.value = b.dataset.repeat; chose(form); }));
    form.addEventListener("reset", () => setTimeout(() => show(form), 0));
    show(form);
  });
})();
