// Mainspring console: optional auto-refresh of the runs page, remembered in this browser.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var box = document.querySelector("input[data-auto-refresh]");
  if (!box) return;
  var seconds = Number(box.getAttribute("data-auto-refresh")) || 5;
  var key = "mainspring.autoRefresh";
  var timer = null;
  function apply() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (box.checked) timer = setTimeout(function () { location.reload(); }, seconds * 1000);
  }
  box.checked = localStorage.getItem(key) === "1";
  box.addEventListener("change", function () {
    localStorage.setItem(key, box.checked ? "1" : "0");
    apply();
  });
  apply();
});
