/* Run Studio page behaviour. Everything here is an enhancement: without it, pages still
   render their tables and links, forms still submit, and charts say they need JavaScript. */
(function () {
  "use strict";

  function formatDuration(total) {
    total = Math.max(0, Math.floor(total));
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (h) return h + "h " + pad(m) + "m " + pad(s) + "s";
    if (m) return m + "m " + pad(s) + "s";
    return s + "s";
  }

  // Durations of active runs tick in the browser; the server is asked only when a status changes.
  var seen = new WeakMap();
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-tick-base]").forEach(function (el) {
      if (!seen.has(el)) seen.set(el, now);
      var base = parseFloat(el.getAttribute("data-tick-base")) || 0;
      el.textContent = formatDuration(base + (now - seen.get(el)) / 1000);
    });
  }
  setInterval(tick, 1000);

  // Charts: each fragment carries its figure as JSON (json_script), drawn once it is in the page.
  function drawCharts(root) {
    if (!window.Plotly) return;
    var plots = Array.prototype.slice.call(root.querySelectorAll(".plot[data-figure]:not([data-drawn])"));
    if (root.matches && root.matches(".plot[data-figure]:not([data-drawn])")) plots.push(root);
    plots.forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-figure"));
      if (!source) return;
      el.setAttribute("data-drawn", "1");
      var figure = JSON.parse(source.textContent);
      var layout = Object.assign({
        margin: { l: 55, r: 15, t: 10, b: 45 },
        showlegend: (figure.data || []).length > 1,
        legend: { orientation: "h", y: -0.25 },
        font: { family: "system-ui, sans-serif", size: 12, color: "#1c2430" },
        paper_bgcolor: "#ffffff",
        plot_bgcolor: "#ffffff",
        hovermode: "closest"
      }, figure.layout || {});
      window.Plotly.newPlot(el, figure.data || [], layout, { responsive: true, displaylogo: false });
    });
  }

  function enhance(root) {
    if (!root.querySelectorAll) return;
    root.querySelectorAll(".js-only[hidden]").forEach(function (el) { el.hidden = false; });
    drawCharts(root);
    followLog();
  }

  // --- Logs tab: follow the end while new lines arrive, unless the reader scrolled up. ---
  function logBox() { return document.getElementById("log-text"); }
  function followLog() {
    var box = logBox(), follow = document.getElementById("log-follow");
    if (box && (!follow || follow.checked)) box.scrollTop = box.scrollHeight;
  }
  document.addEventListener("click", function (event) {
    var jump = event.target.closest("[data-jump-end]");
    if (jump && logBox()) {
      event.preventDefault();
      var box = logBox();
      box.scrollTop = box.scrollHeight;
      box.focus({ preventScroll: true });
      var follow = document.getElementById("log-follow");
      if (follow) follow.checked = true;
    }
    var copy = event.target.closest("[data-copy-link]");
    if (copy) copyText(window.location.href, copy, "Link copied");
    var copyTarget = event.target.closest("[data-copy-target]");
    if (copyTarget) {
      var input = document.getElementById(copyTarget.getAttribute("data-copy-target"));
      if (input) copyText(input.value, copyTarget, "Copied");
    }
  });

  function copyText(text, button, done) {
    var original = button.textContent;
    var finish = function () { button.textContent = done; setTimeout(function () { button.textContent = original; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(finish, function () { window.prompt("Copy this:", text); });
    } else {
      window.prompt("Copy this:", text);
    }
  }

  // --- Submit form: the folder chooser's relative paths, and only the chosen source's fields. ---
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.id === "id_folder") {
      var paths = Array.prototype.map.call(el.files, function (f) { return f.webkitRelativePath || f.name; });
      var hidden = document.getElementById("id_folder_paths");
      if (hidden) hidden.value = JSON.stringify(paths);
    }
    if (el.name === "source") showSource();
  });
  function showSource() {
    var chosen = document.querySelector("input[name=source]:checked");
    if (!chosen) return;
    document.querySelectorAll(".source-upload").forEach(function (el) { el.hidden = chosen.value !== "upload"; });
    document.querySelectorAll(".source-snapshot").forEach(function (el) { el.hidden = chosen.value !== "snapshot"; });
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "state-form" && event.detail.successful) {
      form.querySelectorAll("[data-clear-after-submit]").forEach(function (el) { el.value = ""; });
    }
  });
  // A tab left tailing a chatty run for hours would hold the whole log; keep the newest part.
  var LOG_KEEP = 1500000, LOG_MAX = 2000000;
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "log-text") {
      if (target.textContent.length > LOG_MAX) {
        target.textContent = "[older lines trimmed here; download the whole log]\n" + target.textContent.slice(-LOG_KEEP);
      }
      followLog();
    }
  });
  // The pages' Content-Security-Policy forbids eval, so htmx [filter] expressions are done here.
  // The state form applies a change at once, except in fields marked .manual (applied on submit).
  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("#state-form");
    if (form && !event.target.closest(".manual") && window.htmx) window.htmx.trigger(form, "studio:change");
  });
  // Live polls (runs/views.py LIVE_POLL, "every 2s") wait while the tab is hidden.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (document.visibilityState !== "visible" && elt && elt.getAttribute("hx-trigger") === "every 2s") {
      event.preventDefault();
    }
  });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    showSource();
    tick();
  });
})();
