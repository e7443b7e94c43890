// The dashboard's only script (no inline scripts: the Content-Security-Policy forbids them).
// Keyboard shortcuts, row selection, "select this page", and the live refresh of the runs list,
// which pauses while the tab is hidden.
(function () {
  "use strict";
  const LIVE_EVERY_MS = 3000;

  function rows() { return Array.from(document.querySelectorAll("tr[data-href]")); }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    let index = all.findIndex((row) => row.classList.contains("selected"));
    if (index >= 0) all[index].classList.remove("selected");
    index = Math.min(Math.max(index + step, 0), all.length - 1);
    all[index].classList.add("selected");
    all[index].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement;
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "/") {
      const search = document.getElementById("search");
      if (search) { event.preventDefault(); search.focus(); }
    } else if (event.key === "j") {
      move(1);
    } else if (event.key === "k") {
      move(-1);
    } else if (event.key === "Enter") {
      const selected = document.querySelector("tr.selected[data-href]");
      if (selected) window.location.assign(selected.getAttribute("data-href"));
    }
  });

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target instanceof HTMLInputElement && target.id === "select-page") {
      document.querySelectorAll('input[name="run_id"]').forEach((box) => { box.checked = target.checked; });
    }
  });

  function refresh() {
    const live = document.getElementById("live");
    if (!live || !live.checked || document.visibilityState !== "visible" || !window.htmx) return;
    window.htmx.ajax("GET", live.getAttribute("data-url"), { target: "#runs-rows", swap: "outerHTML" });
  }
  setInterval(refresh, LIVE_EVERY_MS);
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "visible") refresh(); });
})();
