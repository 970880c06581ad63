/* Reach D. Box charts: the operators' charts (emails, lateness, queue depth, rate-limit
   waits per minute, sent lateness), each user's 7-day chart on the dashboard, and the
   Lateness view (how late the organization's or the user's own emails were sent).

   Drawn with the vendored uPlot (static/vendor/uplot-VERSION, loaded just before this file) from
   the JSON of webapp/charts.py, and refreshed by polling while the page is visible: the data
   are aggregates over every user, which the per-user live stream does not carry.
   Plain JavaScript, no build step, no inline script (the CSP forbids them). */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const numFmt = new Intl.NumberFormat();
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });
  const weekdayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short" });
  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
  const css = getComputedStyle(document.documentElement);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const PALETTE = ["#3b5bdb", "#e67700", "#0c8599", "#ae3ec9", "#5c940d", "#c92a2a", "#868e96"];

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    if (response.status === 401) throw new Error("signed out: reload the page to sign in again");
    if (!response.ok) throw new Error("the server answered " + response.status);
    return response.json();
  }

  /* Call ``load`` now and every ``seconds`` while the page is visible (one call at a time). */
  function every(seconds, load) {
    let timer = null, busy = false;
    async function run() {
      timer = null;
      if (busy || document.hidden) return;
      busy = true;
      try { await load(); } finally {
        busy = false;
        if (!document.hidden) timer = setTimeout(run, seconds * 1000);
      }
    }
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) { clearTimeout(timer); timer = null; } else if (timer === null) run();
    });
    run();
  }

  /* One uPlot in a box: created on the first data, updated in place while its series stay
     the same, rebuilt when they change (a transport appears), resized with its box. */
  class Chart {
    constructor(box, height, options) {
      this.box = box; this.height = height; this.options = options; this.plot = null; this.key = null;
      if (window.ResizeObserver) {
        new ResizeObserver(() => {
          if (this.plot && Math.abs(this.plot.width - this.width()) > 1) this.plot.setSize({ width: this.width(), height: this.height });
        }).observe(box);
      }
    }
    width() { return Math.max(Math.floor(this.box.clientWidth), 120); }
    draw(data, series, extra) {
      const key = series.map((s) => s.label).join("\u0000");
      if (this.plot && key === this.key) { this.plot.setData(data); return; }
      if (this.plot) this.plot.destroy();
      this.key = key;
      const options = Object.assign({ width: this.width(), height: this.height, series: [{}].concat(series) }, this.options, extra || {});
      this.plot = new window.uPlot(options, data, this.box);
    }
  }

  const fromZero = (u, min, max) => [0, Math.max(1, max === null ? 1 : max * 1.1)];
  const line = (label, stroke, extra) => Object.assign({ label, stroke, width: 2, points: { show: false } }, extra || {});
  // Sparse values (a quiet minute is a gap, not a zero) stay visible as dots.
  const dotted = (label, stroke) => line(label, stroke, { points: { show: true, size: 4, fill: stroke } });
  const sum = (values) => values.reduce((a, b) => a + (b || 0), 0);
  const last = (values) => { for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i]; return null; };
  const show = (value, unit) => (value === null ? "—" : numFmt.format(value) + (unit || ""));
  const secFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  /* A lateness in ms as people read it: "340 ms", "12.5 s", "4.2 min". */
  const ago = (ms) => {
    if (ms === null || ms === undefined) return "—";
    if (Math.abs(ms) < 1000) return numFmt.format(Math.round(ms)) + " ms";
    if (Math.abs(ms) < 120000) return secFmt.format(ms / 1000) + " s";
    return secFmt.format(ms / 60000) + " min";
  };
  const seconds = (values) => values.map((v) => (v === null ? null : v / 1000));
  /* The three percentile lines, told apart by their dashes as well as their colours. */
  const percentileLines = () => [
    line("p50 s", color("--scheduled", "#1864ab"), { points: { show: true, size: 6, fill: color("--scheduled", "#1864ab") } }),
    line("p95 s", color("--uncertain", "#a34f00"), { dash: [6, 3], points: { show: true, size: 6, fill: color("--uncertain", "#a34f00") } }),
    line("p99 s", color("--sending", "#7048e8"), { dash: [2, 3], points: { show: true, size: 6, fill: color("--sending", "#7048e8") } }),
  ];
  const minuteFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const overBars = (label) => ({ label, fill: color("--failed", "#c92a2a"), stroke: color("--failed", "#c92a2a"), width: 0, points: { show: false }, paths: window.uPlot.paths.bars({ size: [0.8, 12] }) });

  // ---- the operators' page ----------------------------------------------------------------
  function operators(section) {
    const base = section.dataset.chartsSrc, range = section.dataset.range || "1h";
    const status = $("[data-chart-status]", section);
    const common = { legend: { live: false }, cursor: { drag: { x: false, y: false } } };
    const countAxes = { scales: { y: { range: fromZero } } };
    const charts = {};
    for (const figure of section.querySelectorAll("figure[data-chart]")) {
      charts[figure.dataset.chart] = { figure, chart: new Chart($(".chart-plot", figure), 170, common) };
    }
    let loads = 0;

    function caption(name, text, label) {
      const c = charts[name];
      $("[data-chart-summary]", c.figure).textContent = text;
      $(".chart-plot", c.figure).setAttribute("aria-label", label + ": " + text);
    }

    async function load() {
      let data;
      try { data = await getJSON(base + "?range=" + encodeURIComponent(range)); } catch (err) {
        status.textContent = "Could not refresh the charts (" + err.message + "); trying again shortly.";
        status.classList.add("warn");
        return;
      }
      const s = data.series, t = data.t;
      charts.throughput.chart.draw([t, s.sent, s.failed, s.retried], [
        line("Sent", color("--sent", "#237032")), line("Failed", color("--failed", "#c92a2a")), line("Retried", color("--uncertain", "#a34f00")),
      ], countAxes);
      caption("throughput", `sent ${show(data.totals.sent)} · failed ${show(data.totals.failed)} · retried ${show(data.totals.retried)}`, "Emails per minute");
      charts.lateness.chart.draw([t, s.late_p50_ms, s.late_p99_ms], [
        dotted("p50 ms", color("--scheduled", "#1864ab")), dotted("p99 ms", color("--sending", "#7048e8")),
      ], countAxes);
      caption("lateness", `latest p50 ${show(last(s.late_p50_ms), " ms")} · p99 ${show(last(s.late_p99_ms), " ms")}`, "Lateness per minute");
      charts.depth.chart.draw([t, s.due, s.waiting, s.sending], [
        dotted("Due", color("--failed", "#c92a2a")), dotted("Waiting", color("--uncertain", "#a34f00")), dotted("Sending", color("--sending", "#7048e8")),
      ], countAxes);
      caption("depth", `latest due ${show(last(s.due))} · waiting ${show(last(s.waiting))} · sending ${show(last(s.sending))}`, "Queue depth");
      charts.sent_lateness.chart.draw([t, seconds(s.sent_late_p50_ms), seconds(s.sent_late_p95_ms), seconds(s.sent_late_p99_ms)], percentileLines(), countAxes);
      caption("sent_lateness", `latest p50 ${ago(last(s.sent_late_p50_ms))} · p95 ${ago(last(s.sent_late_p95_ms))} · p99 ${ago(last(s.sent_late_p99_ms))} · ${show(data.totals.sent_late_over_1m)} sent over a minute late ${range === "24h" ? "in 24 hours" : "this hour"}`, "Sent lateness per minute");
      const labels = Object.keys(data.rate_limited);
      const perTransport = labels.length ? labels : ["(none)"];
      charts.rate_limited.chart.draw([t].concat(perTransport.map((l) => data.rate_limited[l] || t.map(() => 0))),
        perTransport.map((l, i) => line(l, PALETTE[i % PALETTE.length])), countAxes);
      caption("rate_limited", labels.length ? labels.map((l) => `${l} ${show(sum(data.rate_limited[l]))}`).join(" · ") : "none", "Rate-limit waits per minute");

      loads += 1;
      section.dataset.loads = String(loads);
      section.dataset.sent = String(data.totals.sent);
      section.dataset.failed = String(data.totals.failed);
      section.dataset.retried = String(data.totals.retried);
      section.dataset.rateLimited = String(data.totals.rate_limited);
      section.dataset.sentLateOver1m = String(data.totals.sent_late_over_1m);
      status.classList.remove("warn");
      status.textContent = `Updated ${timeFmt.format(new Date())}; refreshes every ${section.dataset.refreshSeconds} s. One point per minute.`;
    }

    every(Number(section.dataset.refreshSeconds) || 10, load);
  }

  // ---- a user's last 7 days, on the dashboard -------------------------------------------------
  function mine(section) {
    const plotBox = $(".chart-plot", section);
    const summary = $("[data-chart-summary]", section);
    let days = [];
    const chart = new Chart(plotBox, 120, {
      legend: { live: false },
      cursor: { show: false },
      scales: { x: { time: false, range: () => [-0.5, days.length - 0.5] }, y: { range: fromZero } },
      axes: [
        {
          // "Sun 29" where there is room, "Sun" on a phone (seven days: the weekday is enough).
          values: (u, splits) => {
            const fmt = u.bbox.width / (window.devicePixelRatio || 1) / Math.max(days.length, 1) < 64 ? weekdayFmt : dayFmt;
            return splits.map((i) => (days[i] ? fmt.format(days[i]) : ""));
          },
          splits: () => days.map((_, i) => i),
          grid: { show: false },
        },
        { size: 40, grid: { stroke: color("--chart-grid", "#eef0f5") } },
      ],
    });
    const bars = (label, fill, align) => ({ label, fill, stroke: fill, width: 0, points: { show: false }, paths: window.uPlot.paths.bars({ size: [0.36, 28], align }) });

    async function load() {
      let data;
      try { data = await getJSON(section.dataset.myChartSrc + "?tz=" + encodeURIComponent(zone)); } catch (err) {
        summary.textContent = "(could not load: " + err.message + ")";
        return;
      }
      // The server counted days in this browser's zone; each is drawn at its own local date.
      days = data.days.map((d) => { const [y, m, day] = d.split("-").map(Number); return new Date(y, m - 1, day); });
      const x = days.map((_, i) => i);
      chart.draw([x, data.series.sent, data.series.failed], [
        bars("Sent", color("--sent", "#237032"), -1), bars("Failed", color("--failed", "#c92a2a"), 1),
      ]);
      const text = `sent ${show(data.totals.sent)} · failed ${show(data.totals.failed)}`;
      summary.textContent = text;
      plotBox.setAttribute("aria-label", "Your emails per day, last 7 days: " + text);
      section.dataset.sent = String(data.totals.sent);
      section.dataset.failed = String(data.totals.failed);
      section.dataset.loads = String(Number(section.dataset.loads || 0) + 1);
    }

    every(Number(section.dataset.refreshSeconds) || 60, load);
  }

  // ---- the Lateness view: the organization's or the user's own emails ----------------------
  function lateness(section) {
    const base = section.dataset.latenessSrc, range = section.dataset.range || "1h";
    const status = $("[data-chart-status]", section);
    const common = { legend: { live: false }, cursor: { drag: { x: false, y: false } } };
    const countAxes = { scales: { y: { range: fromZero } } };
    const figures = {};
    for (const figure of section.querySelectorAll("figure[data-chart]")) {
      figures[figure.dataset.chart] = { figure, chart: new Chart($(".chart-plot", figure), 170, common) };
    }
    const tbody = $("#lateness-minutes tbody", section);

    function caption(name, text, label) {
      const f = figures[name];
      $("[data-chart-summary]", f.figure).textContent = text;
      $(".chart-plot", f.figure).setAttribute("aria-label", label + ": " + text);
    }

    /* The text alternative: the latest minutes that had sends, newest first. */
    function table(data) {
      const s = data.series, rows = [];
      for (let i = data.t.length - 1; i >= 0 && rows.length < 10; i--) {
        if (!s.sent[i]) continue;
        const tr = document.createElement("tr");
        tr.dataset.t = String(data.t[i]);
        const cells = [minuteFmt.format(new Date(data.t[i] * 1000)), show(s.sent[i]), ago(s.p50_ms[i]), ago(s.p95_ms[i]), ago(s.p99_ms[i]),
          s.over_1m[i] ? "⚠ " + show(s.over_1m[i]) : "0"];
        cells.forEach((text, c) => {
          const td = document.createElement("td");
          td.textContent = text;
          if (c > 0) td.className = "num";
          tr.appendChild(td);
        });
        rows.push(tr);
      }
      if (!rows.length) {
        const tr = document.createElement("tr"), td = document.createElement("td");
        td.colSpan = 6; td.className = "muted"; td.textContent = "None in this range.";
        tr.appendChild(td); rows.push(tr);
      }
      tbody.replaceChildren(...rows);
    }

    async function load() {
      let data;
      try {
        data = await getJSON(base + "?range=" + encodeURIComponent(range) + "&mine=" + (section.dataset.mine === "1" ? "1" : "0"));
      } catch (err) {
        status.textContent = "Could not refresh the chart (" + err.message + "); trying again shortly.";
        status.classList.add("warn");
        return;
      }
      const s = data.series, t = data.t;
      figures.percentiles.chart.draw([t, seconds(s.p50_ms), seconds(s.p95_ms), seconds(s.p99_ms)], percentileLines(), countAxes);
      caption("percentiles", `${show(data.totals.sent)} sent · latest minute with sends: p50 ${ago(last(s.p50_ms))} · p95 ${ago(last(s.p95_ms))} · p99 ${ago(last(s.p99_ms))}`, "Sent lateness per minute");
      figures.over.chart.draw([t, s.over_1m], [overBars("Over a minute late")], countAxes);
      caption("over", `${show(data.totals.over_1m)} of ${show(data.totals.sent)} sent more than a minute late`, "Emails sent more than a minute late, per minute");
      table(data);
      section.dataset.sent = String(data.totals.sent);
      section.dataset.over1m = String(data.totals.over_1m);
      section.dataset.loads = String(Number(section.dataset.loads || 0) + 1);
      status.classList.remove("warn");
      status.textContent = `Updated ${timeFmt.format(new Date())}; refreshes every ${section.dataset.refreshSeconds} s. One point per minute.`;
    }

    every(Number(section.dataset.refreshSeconds) || 10, load);
  }

  function start() {
    if (!window.uPlot) return;
    const ops = $("[data-charts-src]");
    if (ops) operators(ops);
    const own = $("[data-my-chart-src]");
    if (own) mine(own);
    const late = $("[data-lateness-src]");
    if (late) lateness(late);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
