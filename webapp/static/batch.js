/* Send to a list: preview through the API (dry run), then confirm once (idempotency key). */
(function () {
  "use strict";
  const $ = (s, r) => (r || document).querySelector(s);
  const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
  document.addEventListener("DOMContentLoaded", () => {
    const reach = window.reach, form = $("#batch-form");
    if (!form || !reach) return;
    const box = $("#batch-preview");
    let payload = null, key = reach.newKey();
    const source = () => $('input[name="source"]:checked', form).value;
    $$('input[name="source"]', form).forEach((r) => r.addEventListener("change", () => {
      $$("[data-source]", form).forEach((el) => { el.hidden = el.dataset.source !== source(); });
    }));
    form.addEventListener("input", () => { box.hidden = true; key = reach.newKey(); });
    async function build() {
      const data = { subject: form.subject.value, body_text: form.body_text.value, name: form.name.value, time_zone: reach.zone };
      if (source() === "csv") {
        const file = form.csv_file.files[0];
        data.csv = file ? await file.text() : "";
      } else data.addresses = form.addresses.value;
      if (form.start.value) data.start_at = new Date(form.start.value).toISOString();
      data.min_delay_seconds = form.min_delay_seconds.value === "" ? 0 : Number(form.min_delay_seconds.value);
      if (form.hourly_cap.value !== "") data.hourly_cap = Number(form.hourly_cap.value);
      return data;
    }
    function text(tag, value, cls) { const el = document.createElement(tag); el.textContent = value; if (cls) el.className = cls; return el; }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      reach.clearErrors(form);
      payload = await build();
      const button = $("#b-preview"); button.disabled = true;
      try {
        const r = await reach.api("POST", "/api/v1/batches", Object.assign({ dry_run: true }, payload));
        if (!r.ok) { box.hidden = true; reach.showErrors(form, (r.data && r.data.error) || { message: "HTTP " + r.status }); return; }
        const p = r.data, list = $("#bp-emails"), rejected = $("#bp-rejected");
        list.replaceChildren(); rejected.replaceChildren();
        $("#bp-summary").textContent = p.accepted + " email(s) will be scheduled" +
          (p.first_send_at ? ", from " + reach.dateFmt.format(new Date(p.first_send_at)) + " to " + reach.dateFmt.format(new Date(p.last_send_at)) + " (" + reach.zone + ")" : "") +
          (p.rejected.length ? "; " + p.rejected.length + " line(s) rejected (below)." : ".");
        p.preview.forEach((e) => {
          const li = document.createElement("li");
          li.append(text("strong", e.subject), text("span", " → " + e.to + " · " + reach.dateFmt.format(new Date(e.send_at)), "muted"), text("pre", e.body_text, "text-body"));
          list.append(li);
        });
        p.rejected.forEach((x) => { const tr = document.createElement("tr"); tr.append(text("td", x.line), text("td", x.value), text("td", x.reason)); rejected.append(tr); });
        $("#bp-rejected-wrap").hidden = !p.rejected.length;
        $("#bp-count").textContent = p.accepted;
        $("#bp-confirm").disabled = !p.accepted;
        box.hidden = false; box.scrollIntoView({ behavior: "smooth" });
      } finally { button.disabled = false; }
    });
    $("#bp-confirm").addEventListener("click", async (ev) => {
      const button = ev.currentTarget; if (button.disabled || !payload) return;
      button.disabled = true;
      try {
        const r = await reach.api("POST", "/api/v1/batches", payload, { "Idempotency-Key": key });
        if (r.ok) { location.href = "/batches/" + encodeURIComponent(r.data.batch.id); return; }
        reach.showErrors(form, (r.data && r.data.error) || { message: "HTTP " + r.status });
        box.hidden = true;
      } finally { button.disabled = false; }
    });
  });
})();
