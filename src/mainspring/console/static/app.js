// Mainspring console: small progressive enhancements. Every page works without this file.
//  - live regions: [data-live=SECONDS] elements are re-fetched and swapped while visible;
//  - the log of a running run is followed through Server-Sent Events;
//  - the job form: sections that fit the chosen trigger/task, JSON checks, live fire preview;
//  - the language switcher submits on change; "select all" for bulk actions.
// User data only ever reaches the page as text (textContent) or as our own escaped HTML.
"use strict";
(function () {
  document.documentElement.classList.add("js");
  var REFRESH_HEADER = "X-Console-Refresh";

  function msg(name) {
    return document.body.getAttribute("data-msg-" + name) || name;
  }

  // --- live regions -------------------------------------------------------------------
  function refreshRegions(ids) {
    return fetch(location.href, { headers: { [REFRESH_HEADER]: "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("not refreshed");
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ids.forEach(function (id) {
          var now = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (now && next) now.replaceWith(document.importNode(next, true));
        });
        wireForms(document);
      });
  }

  function liveRegions() {
    // All live regions of a page are refreshed together, with one request per period.
    var regions = Array.prototype.filter.call(document.querySelectorAll("[data-live]"),
      function (region) { return region.id && Number(region.getAttribute("data-live")) > 0; });
    if (!regions.length) return;
    var seconds = Math.min.apply(null, regions.map(function (region) {
      return Number(region.getAttribute("data-live"));
    }));
    var toggles = {};
    regions.forEach(function (region) {
      var toggle = document.querySelector("[data-live-toggle='" + region.id + "']");
      if (!toggle) return;
      var key = "mainspring.live." + region.id;
      toggle.checked = localStorage.getItem(key) !== "0";
      toggle.addEventListener("change", function () {
        localStorage.setItem(key, toggle.checked ? "1" : "0");
      });
      toggles[region.id] = toggle;
    });
    var busy = false;
    setInterval(function () {
      var ids = regions.map(function (region) { return region.id; }).filter(function (id) {
        return !toggles[id] || toggles[id].checked;
      });
      if (busy || document.hidden || !ids.length) return;
      busy = true;
      refreshRegions(ids).catch(function () {}).then(function () { busy = false; });
    }, seconds * 1000);
  }

  // --- following a run's log -------------------------------------------------------------
  function followLog() {
    var pre = document.getElementById("run-log");
    if (!pre || pre.getAttribute("data-follow") !== "true" || !window.EventSource) return;
    var runId = pre.getAttribute("data-run-id");
    var after = pre.getAttribute("data-last-seq") || "-1";
    var status = document.getElementById("log-status");
    var url = "/api/v1/runs/" + encodeURIComponent(runId) + "/logs/follow?after_seq=" +
      encodeURIComponent(after);
    var source = new EventSource(url);
    source.addEventListener("log", function (event) {
      var chunk = JSON.parse(event.data);
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.appendChild(document.createTextNode(chunk.text));
      pre.hidden = false;
      pre.setAttribute("data-last-seq", String(chunk.seq));
      var empty = document.getElementById("log-empty");
      if (empty) empty.remove();
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      if (status) status.textContent = status.getAttribute("data-text") || status.textContent;
    });
    source.addEventListener("state", function () {
      refreshRegions(["run-live"]).catch(function () {});
    });
    source.addEventListener("end", function () {
      source.close();
      if (status) status.textContent = msg("ended");
      refreshRegions(["run-live"]).catch(function () {});
    });
    source.onerror = function () {
      if (status && source.readyState !== EventSource.CLOSED) status.textContent = msg("offline");
    };
  }

  // --- forms ---------------------------------------------------------------------------
  function showGroups(form, group) {
    var value = null;
    form.querySelectorAll("[data-toggle-group='" + group + "']").forEach(function (input) {
      if (input.tagName === "SELECT" || input.checked) value = input.value;
    });
    form.querySelectorAll("[data-group='" + group + "']").forEach(function (section) {
      section.hidden = section.getAttribute("data-when") !== value;
    });
  }

  function checkJson(area) {
    var want = area.getAttribute("data-json");
    var problem = "";
    var text = area.value.trim();
    if (text) {
      try {
        var value = JSON.parse(text);
        var isArray = Array.isArray(value);
        var isObject = value !== null && typeof value === "object" && !isArray;
        if (want === "array" && !isArray) problem = msg("array");
        if (want === "object" && !isObject) problem = msg("object");
      } catch (e) {
        problem = msg("json");
      }
    }
    var note = area.parentNode.querySelector(".field-error.js-json");
    if (!note) {
      note = document.createElement("span");
      note.className = "field-error js-json";
      area.parentNode.appendChild(note);
    }
    note.textContent = problem;
    area.setAttribute("aria-invalid", problem ? "true" : "false");
  }

  function previewFires(form) {
    var box = document.getElementById("fire-preview");
    if (!box) return;
    var list = box.querySelector("[data-preview-list]");
    var error = box.querySelector("[data-preview-error]");
    var none = box.querySelector("[data-preview-none]");
    var zone = box.querySelector("[data-preview-zone]");
    var timer = null;
    var sent = 0;
    function update() {
      var mine = ++sent;
      fetch("/jobs/preview", { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("preview failed");
          return response.json();
        })
        .then(function (data) {
          if (mine !== sent) return; // an older answer arriving late
          list.replaceChildren();
          (data.fires || []).forEach(function (fire) {
            var item = document.createElement("li");
            item.className = "time";
            item.textContent = fire;
            list.appendChild(item);
          });
          error.textContent = data.error || "";
          error.hidden = !data.error;
          none.hidden = data.error !== null || (data.fires || []).length > 0;
          if (zone) zone.textContent = form.elements.timezone.value;
        })
        .catch(function () {});
    }
    var names = ["trigger_kind", "cron_expr", "every", "every_unit", "once_at", "timezone", "name"];
    form.addEventListener("input", function (event) {
      if (names.indexOf(event.target.name) < 0) return;
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    });
    form.addEventListener("change", function (event) {
      if (event.target.name === "trigger_kind" || event.target.name === "every_unit") update();
    });
  }

  function wireForms(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      if (select.dataset.wired) return;
      select.dataset.wired = "1";
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
    root.querySelectorAll("input[data-check-all]").forEach(function (all) {
      if (all.dataset.wired) return;
      all.dataset.wired = "1";
      var name = all.getAttribute("data-check-all");
      all.addEventListener("change", function () {
        all.form.querySelectorAll("input[name='" + name + "']").forEach(function (box) {
          box.checked = all.checked;
        });
      });
    });
    root.querySelectorAll("textarea[data-json]").forEach(function (area) {
      if (area.dataset.wired) return;
      area.dataset.wired = "1";
      area.addEventListener("input", function () { checkJson(area); });
    });
  }

  function jobForm() {
    var form = document.getElementById("job-form");
    if (!form) return;
    ["trigger", "task", "builtin"].forEach(function (group) {
      showGroups(form, group);
      form.querySelectorAll("[data-toggle-group='" + group + "']").forEach(function (input) {
        input.addEventListener("change", function () { showGroups(form, group); });
      });
    });
    previewFires(form);
  }

  // A button with data-confirm asks before its form is sent (the server acts either way).
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    wireForms(document);
    jobForm();
    liveRegions();
    followLog();
  });
})();
