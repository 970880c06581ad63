/* Keyboard shortcuts and the theme toggle. Plain JavaScript, no build step.
   "/" search, "?" this help, j/k the next/previous row, x select it, Enter open it, c compose,
   "g s" / "g f" Scheduled / Failures. A shortcut never takes a key from a field being typed in,
   a select, an editable region, or a key pressed with Ctrl, Alt or Meta. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  // How long "g" waits for its second key.
  const CHORD_MS = 1500;
  const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';

  // ---- the theme toggle: follow the system, light, dark (theme.js applies and keeps it) ----------
  const THEMES = { auto: ["◐", "Auto"], light: ["☀", "Light"], dark: ["☾", "Dark"] };
  const NEXT_THEME = { auto: "light", light: "dark", dark: "auto" };
  function wireTheme() {
    const button = $("#theme-toggle");
    if (!button || !window.reachTheme) return;
    const show = () => {
      const choice = document.documentElement.dataset.themeChoice || "auto";
      $(".theme-icon", button).textContent = THEMES[choice][0];
      $("[data-theme-label]", button).textContent = THEMES[choice][1];
    };
    button.hidden = false;
    show();
    button.addEventListener("click", () => {
      window.reachTheme.choose(NEXT_THEME[document.documentElement.dataset.themeChoice || "auto"]);
      show();
    });
    window.addEventListener("storage", show);
  }

  // ---- where keys belong to the page, not to a shortcut -----------------------------------------
  const TEXT_LIKE = new Set(["checkbox", "radio", "button", "submit", "reset", "range", "color", "file", "image"]);
  function typingIn(el) {
    if (!(el instanceof Element)) return false;
    if (el.isContentEditable || el.closest("[contenteditable]:not([contenteditable=false])")) return true;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && !TEXT_LIKE.has((el.getAttribute("type") || "text").toLowerCase());
  }

  // ---- rows: j/k move, x selects, Enter opens ------------------------------------------------------
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  // The lists' rows (emails, batches, recurring emails) and the dev mailbox's messages.
  const ROWS = "ul.rows > li.row, .mail-row";
  const rows = () => $$(ROWS).filter((row) => visible(row) && !row.classList.contains("leaving"));
  // What a row opens with: its link, or a message's summary (which unfolds it).
  const linkOf = (row) => $("a.row-link", row) || $("summary", row) || $("a[href]", row);
  let current = null;
  function setCurrent(row, focus) {
    if (current && current !== row) current.classList.remove("current");
    current = row;
    if (!row) return;
    row.classList.add("current");
    const link = linkOf(row);
    if (focus && link) link.focus();
    row.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = current ? all.indexOf(current) : -1;
    const next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    setCurrent(all[next], true);
  }
  function select() {
    if (!current || !current.isConnected) move(1);
    if (!current) return;
    // A row with a checkbox (bulk actions) is selected by it; otherwise x puts the focus on the row.
    const box = $('input[type="checkbox"]', current);
    if (box && !box.disabled) { box.click(); box.focus(); } else { const link = linkOf(current); if (link) link.focus(); }
  }
  function open() {
    const link = current && current.isConnected ? linkOf(current) : null;
    if (!link) return false;
    link.click();
    return true;
  }

  // ---- search, compose, places --------------------------------------------------------------------
  const searchInput = () => $('[data-search-input], form[role="search"] input[type="search"], form[role="search"] input:not([type="hidden"]), input[type="search"]');
  function focusSearch() {
    const input = searchInput();
    if (input) { input.focus(); if (input.select) input.select(); return; }
    // No search on this page: the email list's, focused on arrival.
    location.href = home() + "#search";
  }
  function home() { const brand = $("header .brand"); return brand ? brand.getAttribute("href") : "/"; }
  function compose() {
    const button = $$("header [data-open-compose], [data-open-compose]").find(visible);
    if (button) button.click();
  }
  function go(place) {
    if (place === "s") { location.href = home() + "?view=scheduled"; return; }
    // The Failures view where there is one, else the list of failed emails.
    const failures = $('a[href^="/failures"], a[data-shortcut="failures"]');
    location.href = failures ? failures.getAttribute("href") : home() + "?view=failed";
  }

  // ---- the help dialog: a modal <dialog>; Tab cycles inside it, Esc closes it (the browser's own) ----
  function help() {
    const dialog = $("#shortcuts");
    if (!dialog || dialog.open) return;
    const before = document.activeElement;
    dialog.addEventListener("close", () => { if (before && before.isConnected && before.focus) before.focus(); }, { once: true });
    dialog.showModal();
    const close = $("[data-close-shortcuts]", dialog);
    if (close) close.focus();
  }
  function wireDialogs() {
    $$("[data-close-shortcuts]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
    // Focus stays in an open modal dialog: Tab from its last control goes to its first, and back.
    document.addEventListener("keydown", (ev) => {
      if (ev.key !== "Tab") return;
      const dialog = $$("dialog[open]").pop();
      if (!dialog) return;
      const inside = $$(FOCUSABLE, dialog).filter(visible);
      if (!inside.length) return;
      const first = inside[0], last = inside[inside.length - 1], at = document.activeElement;
      if (!dialog.contains(at)) { ev.preventDefault(); first.focus(); } else if (ev.shiftKey && at === first) { ev.preventDefault(); last.focus(); } else if (!ev.shiftKey && at === last) { ev.preventDefault(); first.focus(); }
    });
  }

  let chord = null, chordTimer = null;
  function onKey(ev) {
    if (ev.defaultPrevented || ev.isComposing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    // Esc leaves the search box (the shortcuts work again); what was typed stays.
    if (ev.key === "Escape" && ev.target === searchInput()) { ev.preventDefault(); ev.target.blur(); return; }
    if (typingIn(ev.target) || typingIn(document.activeElement)) return;
    if ($("dialog[open]")) return;  // a dialog has the keys (Esc closes it)
    const key = ev.key;
    if (chord === "g") {
      chord = null; clearTimeout(chordTimer);
      if (key === "s" || key === "f") { ev.preventDefault(); go(key); return; }
      // Any other key is itself (g then j: the next row).
    }
    if (key === "Enter") {
      // Enter on a link or button is theirs; on the page itself it opens the current row.
      const at = document.activeElement;
      if ((!at || at === document.body || at.id === "main") && open()) ev.preventDefault();
      return;
    }
    const actions = {
      "/": focusSearch, "?": help, j: () => move(1), k: () => move(-1), x: select, c: compose,
      g: () => { chord = "g"; clearTimeout(chordTimer); chordTimer = setTimeout(() => { chord = null; }, CHORD_MS); },
    };
    if (!Object.prototype.hasOwnProperty.call(actions, key)) return;
    ev.preventDefault();
    actions[key]();
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireTheme();
    if (document.body.dataset.signedIn !== "1") return;
    wireDialogs();
    document.addEventListener("keydown", onKey);
    // A row reached with Tab or a click is the current one for j/k too.
    document.addEventListener("focusin", (ev) => {
      const row = ev.target instanceof Element ? ev.target.closest(ROWS) : null;
      if (row) setCurrent(row, false);
    });
    if (location.hash === "#search") { const input = searchInput(); if (input) input.focus(); }
  });
})();
