/* The API reference page (/api/docs, webapp/api/docs.py): Swagger UI drawing the OpenAPI document.
 *
 * "Try it out" sends real requests from this page. Signed in, they go as you: the browser adds
 * the session cookie by itself (same origin), and the API wants the page's CSRF token with a
 * session request that changes something, so requestInterceptor adds it from the csrf-token
 * meta tag. A request carrying a personal access token (the Authorize button) needs none and
 * gets none. The token stays in this page's memory (persistAuthorization off).
 */
(function () {
  "use strict";

  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var SAFE = { GET: true, HEAD: true, OPTIONS: true };

  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      return false;
    }
  }

  function hasAuthorization(headers) {
    return Object.keys(headers).some(function (name) { return name.toLowerCase() === "authorization"; });
  }

  function addCsrf(request) {
    request.headers = request.headers || {};
    var method = (request.method || "GET").toUpperCase();
    if (csrf && !SAFE[method] && sameOrigin(request.url) && !hasAuthorization(request.headers)) {
      request.headers["X-CSRF-Token"] = csrf;
    }
    return request;
  }

  // Swagger UI's own dark mode (html.dark-mode) whenever the app's theme is dark (theme.js).
  var html = document.documentElement;
  function followTheme() { html.classList.toggle("dark-mode", html.getAttribute("data-theme") === "dark"); }
  followTheme();
  new MutationObserver(followTheme).observe(html, { attributes: true, attributeFilter: ["data-theme"] });

  // What Swagger UI draws without a name, or with a link inside a button, mended each time it draws:
  // the servers' select gets a name; the operation's path inside its expand button is text, not a link.
  function mend() {
    var servers = root.querySelector("select#servers:not([aria-label])");
    if (servers) servers.setAttribute("aria-label", "Server");
    Array.prototype.forEach.call(root.querySelectorAll(".opblock-summary-control a[href]"), function (a) {
      a.removeAttribute("href");
    });
  }
  new MutationObserver(mend).observe(root, { childList: true, subtree: true });

  window.reachApiDocs = window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    // No badge from validator.swagger.io: this page asks nothing of another host.
    validatorUrl: null,
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    requestInterceptor: addCsrf,
  });
})();
