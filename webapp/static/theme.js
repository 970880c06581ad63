/* The colour theme, set before the page is painted (this file is loaded without defer, in <head>).
   <html data-theme> is "light" or "dark": the choice saved in this browser, else the system's
   (prefers-color-scheme), followed as it changes. The header's toggle (keys.js) calls reachTheme.choose. */
(function () {
  "use strict";
  var root = document.documentElement, KEY = "theme";
  var system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function saved() {
    try { var v = window.localStorage.getItem(KEY); return v === "light" || v === "dark" ? v : null; } catch (e) { return null; }
  }
  function apply() {
    var choice = saved();
    root.dataset.themeChoice = choice || "auto";
    root.dataset.theme = choice || (system && system.matches ? "dark" : "light");
  }
  // "auto", "light" or "dark"; kept in this browser (localStorage), other tabs follow.
  function choose(choice) {
    try {
      if (choice === "light" || choice === "dark") window.localStorage.setItem(KEY, choice);
      else window.localStorage.removeItem(KEY);
    } catch (e) { /* storage refused: this page only */ }
    apply();
    if (!saved() && choice !== "auto") root.dataset.theme = root.dataset.themeChoice = choice;
  }
  apply();
  if (system && system.addEventListener) system.addEventListener("change", apply);
  window.addEventListener("storage", function (ev) { if (ev.key === KEY || ev.key === null) apply(); });
  window.reachTheme = { choose: choose, apply: apply };
})();
