// The console's only script: tell the reader of the timeline that new
// changes arrived (the watch stream), without reloading by itself.
(function () {
  var list = document.querySelector("ol.timeline[data-watch]");
  var note = document.getElementById("live");
  if (!list || !note || !window.EventSource || location.search.indexOf("cursor=") >= 0) return;
  var es = new EventSource(list.getAttribute("data-watch"));
  var show = function () { note.hidden = false; };
  es.addEventListener("change", show);
  es.addEventListener("resync", show);
})();
