// Draws the report pages' charts with uPlot from the JSON each chart element carries:
// <div data-chart='{"x": [unix seconds, ...], "series": [{"label", "kind": "pass"|"fail",
// "values": [...]}]}'>. No inline script: the strict CSP allows none, so pages carry data and
// this file draws it. (Not a json_script block: htmx drops <script> elements from swapped-in
// content, as the project's allowScriptTags=false asks, so the range switch would lose it.)
(function () {
  "use strict";
  var COLOURS = { pass: "#1d7a46", fail: "#b42318" };
  var HEIGHT = 260;
  var DAY = 86400;
  var plots = [];

  function draw(element) {
    if (element.getAttribute("data-drawn") === "1" || typeof window.uPlot === "undefined") { return; }
    var data;
    try { data = JSON.parse(element.getAttribute("data-chart")); } catch (error) { return; }
    if (!data || !data.x || !data.series) { return; }
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (item) {
      var colour = COLOURS[item.kind] || "#1f5fbf";
      series.push({
        label: item.label,
        stroke: colour,
        fill: colour + "22",
        width: 2,
        points: { show: data.x.length <= 31 }
      });
      columns.push(item.values);
    });
    var utc = function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };
    var dayLabel = window.uPlot.fmtDate("{MMM} {D}");
    var plot = new window.uPlot({
      width: Math.max(element.clientWidth, 300),
      height: HEIGHT,
      series: series,
      scales: { x: { time: true } },
      // One point per day: ticks on whole days, labelled by date only.
      axes: [
        {
          incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY],
          values: function (u, splits) {
            return splits.map(function (ts) { return dayLabel(utc(ts)); });
          }
        },
        { size: 60 }
      ],
      tzDate: utc
    }, columns, element);
    element.setAttribute("data-drawn", "1");
    plots.push({ plot: plot, element: element });
  }

  function drawAll() {
    plots = plots.filter(function (entry) { return document.body.contains(entry.element); });
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
  }

  var resizing = 0;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(function () {
      plots.forEach(function (entry) {
        entry.plot.setSize({ width: Math.max(entry.element.clientWidth, 300), height: HEIGHT });
      });
    }, 150);
  });
  document.addEventListener("DOMContentLoaded", drawAll);
  // The range switch swaps the page body in: draw the chart it brings (htmx:load fires on the
  // new content and bubbles, even when the swapped-out target is detached).
  document.addEventListener("htmx:load", drawAll);
})();
