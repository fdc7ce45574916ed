// ModelWarden console: charts from JSON embedded in the page, and the review workbench's keys.
(function () {
  "use strict";
  function charts() {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) return;
      var spec = JSON.parse(document.getElementById(el.dataset.chart).textContent);
      if (!spec.x || spec.x.length === 0) { el.textContent = "no data in this range"; return; }
      var colors = ["#2457c5", "#c62828", "#1f8f4e", "#c77700", "#6a3fb5", "#00838f"];
      var series = [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: colors[i % colors.length], width: 2, scale: s.scale || "y" };
      }));
      var axes = [{}, { scale: "y", label: spec.ylabel || "" }];
      var scales = { x: { time: true } };
      if (spec.y2label) { axes.push({ scale: "y2", side: 1, label: spec.y2label, grid: { show: false } }); }
      var opts = { width: el.clientWidth || 600, height: spec.height || 220, series: series, axes: axes, scales: scales };
      new uPlot(opts, [spec.x].concat(spec.series.map(function (s) { return s.values; })), el);
      el.dataset.drawn = "1";
    });
  }
  function workbench() {
    var form = document.getElementById("review-form");
    if (!form || form.dataset.keys) return;
    form.dataset.keys = "1";
    var dims = Array.prototype.slice.call(form.querySelectorAll(".dim"));
    var at = 0;
    function show() { dims.forEach(function (d, i) { d.classList.toggle("active", i === at); }); }
    function answer(d, value) {
      var input = d.querySelector('input[value="' + value + '"]');
      if (!input) return false;
      input.checked = true;
      return true;
    }
    function complete() {
      return dims.every(function (d) { return !d.dataset.required || d.querySelector("input:checked"); });
    }
    document.addEventListener("keydown", function (ev) {
      if (ev.target && (ev.target.tagName === "TEXTAREA" || ev.target.type === "text")) return;
      var d = dims[at];
      if (ev.key === "Enter") {
        ev.preventDefault();
        if (complete()) { form.requestSubmit(); }
        else { document.getElementById("review-hint").textContent = "answer every question first"; }
        return;
      }
      if (ev.key === "ArrowUp" || ev.key === "k") { at = Math.max(0, at - 1); show(); ev.preventDefault(); return; }
      if (ev.key === "ArrowDown" || ev.key === "j") { at = Math.min(dims.length - 1, at + 1); show(); ev.preventDefault(); return; }
      if (!d) return;
      var key = ev.key.toLowerCase();
      var map = JSON.parse(d.dataset.keymap);
      if (Object.prototype.hasOwnProperty.call(map, key) && answer(d, map[key])) {
        ev.preventDefault();
        at = Math.min(dims.length - 1, at + 1);
        show();
      }
    });
    show();
  }
  function all() { charts(); workbench(); }
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSwap", all);
})();
