/* Reach D. Box search: autocomplete of qualifiers and values in the search box, and the saved
   searches' live counts. Plain JavaScript, no build step; suggestions are inserted as text. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  // A live change arrives in bursts (a batch sending): the counts are asked for at most this often.
  const COUNTS_EVERY_MS = 2000, COUNTS_POLL_MS = 30000, SUGGEST_DELAY_MS = 120;

  // ---- autocomplete ---------------------------------------------------------------------------
  // The word the caret is in: from the space before it to the caret.
  function wordAt(input) {
    const caret = input.selectionStart == null ? input.value.length : input.selectionStart;
    const before = input.value.slice(0, caret);
    const start = before.search(/\S*$/);
    let end = caret;
    while (end < input.value.length && !/\s/.test(input.value[end])) end += 1;
    return { start, end, text: input.value.slice(start, caret) };
  }

  function wireAutocomplete() {
    const input = $("#search-q"), list = $("#search-suggestions");
    if (!input || !list) return;
    let asked = 0, timer = null, active = -1, items = [];

    function close() {
      list.hidden = true; list.textContent = ""; items = []; active = -1;
      input.setAttribute("aria-expanded", "false"); input.removeAttribute("aria-activedescendant");
    }
    function mark(i) {
      active = i;
      $$("[role=option]", list).forEach((li, j) => li.setAttribute("aria-selected", j === i ? "true" : "false"));
      if (i >= 0) input.setAttribute("aria-activedescendant", "suggestion-" + i); else input.removeAttribute("aria-activedescendant");
    }
    function show(suggestions) {
      list.textContent = ""; items = suggestions; active = -1;
      if (!suggestions.length) { close(); return; }
      suggestions.forEach((s, i) => {
        const li = document.createElement("li");
        li.id = "suggestion-" + i; li.setAttribute("role", "option"); li.setAttribute("aria-selected", "false");
        const text = document.createElement("span"); text.className = "s-text"; text.textContent = s.text;
        const hint = document.createElement("span"); hint.className = "s-hint"; hint.textContent = s.hint;
        li.append(text, hint);
        // mousedown, not click: the input keeps its focus (and its caret).
        li.addEventListener("mousedown", (ev) => { ev.preventDefault(); accept(i); });
        list.append(li);
      });
      list.hidden = false; input.setAttribute("aria-expanded", "true");
    }
    function accept(i) {
      const s = items[i]; if (!s) return;
      const w = wordAt(input), value = input.value;
      const done = !s.text.endsWith(":") && !s.text.endsWith(",");
      const inserted = s.text + (done ? " " : "");
      input.value = value.slice(0, w.start) + inserted + value.slice(w.end).replace(/^\s+/, "");
      const caret = w.start + inserted.length;
      input.setSelectionRange(caret, caret);
      close();
      if (!done) ask();  // a qualifier: go on with its values
    }
    async function ask() {
      const w = wordAt(input), mine = ++asked;
      if (!w.text) { close(); return; }
      try {
        const r = await window.reach.api("GET", "/search/suggest?w=" + encodeURIComponent(w.text));
        if (mine !== asked || document.activeElement !== input) return;  // overtaken, or left
        show(r.ok && r.data ? r.data.suggestions : []);
      } catch (e) { close(); }
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(ask, SUGGEST_DELAY_MS); });
    input.addEventListener("keydown", (ev) => {
      if (list.hidden) return;
      if (ev.key === "ArrowDown") { ev.preventDefault(); mark((active + 1) % items.length); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); mark(active <= 0 ? items.length - 1 : active - 1); }
      else if ((ev.key === "Enter" || ev.key === "Tab") && active >= 0) { ev.preventDefault(); accept(active); }
      else if (ev.key === "Escape") { ev.preventDefault(); close(); }
    });
    input.addEventListener("blur", () => setTimeout(close, 100));
  }

  // ---- saved searches: live counts ----------------------------------------------------------
  function wireCounts() {
    if (!$("[data-saved-count]")) return;
    let busy = false, again = false, last = 0, timer = null;
    async function refresh() {
      if (busy) { again = true; return; }
      busy = true; last = Date.now();
      try {
        const r = await window.reach.api("GET", "/searches/counts.json");
        if (r.ok && r.data) {
          Object.entries(r.data.counts).forEach(([id, n]) => {
            $$('[data-saved-count="' + CSS.escape(id) + '"]').forEach((el) => { el.textContent = n >= r.data.cap ? n + "+" : String(n); });
          });
        }
      } catch (e) { /* offline: the next change or poll tries again */ } finally {
        busy = false;
        if (again) { again = false; soon(); }
      }
    }
    function soon() {
      if (timer) return;
      timer = setTimeout(() => { timer = null; refresh(); }, Math.max(0, last + COUNTS_EVERY_MS - Date.now()));
    }
    // app.js says when an email changed (live stream or polling).
    document.addEventListener("reach:changed", soon);
    setInterval(refresh, COUNTS_POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => { wireAutocomplete(); wireCounts(); });
})();
