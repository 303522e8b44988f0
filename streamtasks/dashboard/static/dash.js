// streamtasks dashboard: refresh the page's live part without a full reload.
// The server answers a request with "X-Partial: 1" with the page's content block only.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.refresh !== "1") { return; }
  var every = 3000;
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(window.location.href, { headers: { "X-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) { live.innerHTML = html; live.dataset.updated = String(Date.now()); }
      })
      .catch(function () { live.dataset.stale = "1"; });
  }
  window.setInterval(refresh, every);
})();
