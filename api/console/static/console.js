// Coordinator console behaviour: keyboard shortcuts, the help dialog, live worklist updates.
// Plain script on top of server-rendered pages: everything works without it, only faster with it.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  // --- copy buttons (e.g. a portal page link): copy the named input's value ---------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-copy]");
    var field = button && document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard) navigator.clipboard.writeText(field.value).then(done, function () {});
    else if (document.execCommand("copy")) done();
  });

  // --- list navigation (worklist rows, inbox items) ---------------------------------------------
  function items() {
    return Array.prototype.slice.call(document.querySelectorAll("#worklist tr.row, #inbox li.esc"));
  }
  function current() {
    return document.querySelector("#worklist tr.selected, #inbox li.selected");
  }
  function select(item) {
    var previous = current();
    if (previous) previous.classList.remove("selected");
    if (!item) return;
    item.classList.add("selected");
    var link = item.querySelector("a.open");
    (link || item).focus();
    item.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    var list = items();
    if (!list.length) return;
    var index = list.indexOf(current());
    if (index < 0) {
      var focused = document.activeElement && document.activeElement.closest("#worklist tr.row, #inbox li.esc");
      index = list.indexOf(focused);
    }
    select(list[Math.max(0, Math.min(list.length - 1, index < 0 ? 0 : index + step))]);
  }
  document.addEventListener("focusin", function (event) {
    var item = event.target.closest && event.target.closest("#worklist tr.row, #inbox li.esc");
    if (item && item !== current()) {
      var previous = current();
      if (previous) previous.classList.remove("selected");
      item.classList.add("selected");
    }
  });

  // --- shortcuts ----------------------------------------------------------------------------------
  var pendingG = false;
  function focusForm(id) {
    var form = document.getElementById(id);
    if (!form) return false;
    var field = form.querySelector("select, input:not([type=hidden]), textarea");
    form.scrollIntoView({ block: "center" });
    if (field) field.focus();
    return true;
  }
  function openHelp() {
    var dialog = document.getElementById("help");
    if (dialog && !dialog.open) dialog.showModal();
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
    var key = event.key;
    if (pendingG) {
      pendingG = false;
      var go = { w: "/", e: "/escalations", s: "/start", c: "/catalogue", a: "/analytics" }[key];
      if (go) { window.location.href = go; event.preventDefault(); }
      return;
    }
    var handled = true;
    if (key === "?") openHelp();
    else if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "g") pendingG = true;
    else if (key === "/") { var search = document.getElementById("f-q"); if (search) search.focus(); else handled = false; }
    else if (key === "u") { var show = document.getElementById("live-show"); if (show && !document.getElementById("live").hidden) show.click(); else handled = false; }
    else if (key === "Enter" && current() && document.activeElement === document.body) {
      var link = current().querySelector("a.open"); if (link) link.click();
    }
    else if (key === "r") handled = focusForm("form-reassign");
    else if (key === "x") handled = focusForm("form-extend");
    else if (key === "h") handled = focusForm("form-hold") || focusForm("form-resume");
    else if (key === "n") handled = focusForm("form-note");
    else if ((key === "a" || key === "v") && current() && current().matches("li.esc")) {
      var button = current().querySelector('button[data-key="' + key + '"]');
      if (button) { var input = button.form.querySelector("input[name=note]"); if (input) input.focus(); else button.click(); }
      else handled = false;
    }
    else handled = false;
    if (handled) event.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () {
    var help = document.getElementById("help-open");
    if (help) help.addEventListener("click", openHelp);
    var focused = document.querySelector("#inbox li.focused");
    if (focused) select(focused);
    // Reassign: offer only the providers of the chosen handover's role.
    var handover = document.getElementById("reassign-handover");
    var provider = document.getElementById("reassign-provider");
    if (handover && provider) {
      var sync = function () {
        var first = null;
        Array.prototype.forEach.call(provider.options, function (option) {
          var mine = option.getAttribute("data-handover") === handover.value;
          option.hidden = !mine; option.disabled = !mine;
          if (mine && !first) first = option;
        });
        if (first && provider.selectedOptions[0] && provider.selectedOptions[0].disabled) provider.value = first.value;
        if (first && !provider.value) provider.value = first.value;
      };
      handover.addEventListener("change", sync); sync();
    }
    startLive();
    startPathwayLive();
  });

  // Reconnect a closed live feed, unless the session has ended: then say so, once.
  function retryOrSignOut(banner, connect) {
    fetch("/console/ping", { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) {
        banner.textContent = "";
        banner.appendChild(document.createTextNode("You are signed out, so this page no longer updates. "));
        var link = document.createElement("a");
        link.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
        link.textContent = "Sign in again";
        banner.appendChild(link);
        banner.hidden = false;
      } else {
        setTimeout(connect, 3000);
      }
    }, function () { setTimeout(connect, 3000); });
  }

  // --- pathway page: say when the pathway changed under the reader (never reload by itself) ---
  function startPathwayLive() {
    var banner = document.getElementById("pathway-live");
    if (!banner || !window.EventSource) return;
    var id = banner.getAttribute("data-pathway");
    var since = banner.getAttribute("data-since");
    var source = null;
    function connect() {
      if (source && source.readyState !== 2) return;
      source = new EventSource("/console/events?since=" + encodeURIComponent(since));
      source.addEventListener("changed", function (event) {
        var data = JSON.parse(event.data);
        var at = (data.at || {})[id];
        if (at && Date.parse(at) > Date.parse(banner.getAttribute("data-since"))) banner.hidden = false;
      });
      source.onerror = function () { if (source.readyState === 2) retryOrSignOut(banner, connect); };
    }
    connect();
    window.addEventListener("focus", connect);
  }

  // --- live worklist: server-sent events; rows refresh in place, never reorder under the cursor ----
  function startLive() {
    var banner = document.getElementById("live");
    var table = document.getElementById("worklist");
    if (!banner || !table || !window.EventSource) return;
    var changed = {};
    var source = null;
    var since = banner.getAttribute("data-since");
    function count() {
      var n = Object.keys(changed).length;
      document.getElementById("live-count").textContent = String(n);
      banner.hidden = n === 0;
    }
    function refresh(id) {
      var row = document.getElementById("row-" + id);
      if (!row) return;
      var view = banner.getAttribute("data-view") || "";
      var url = "/console/rows/" + encodeURIComponent(id) + (view ? "?" + view : "");
      fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          var old = document.getElementById("row-" + id);
          if (!html || !old) return;
          var selected = old.classList.contains("selected");
          var hadFocus = old.contains(document.activeElement);
          // Swap in place, synchronously, keeping the selection and focus (never reorder).
          if (window.htmx && window.htmx.swap) window.htmx.swap(old, html, { swapStyle: "outerHTML" });
          else old.outerHTML = html;
          var fresh = document.getElementById("row-" + id);
          if (!fresh) return;
          if (selected) fresh.classList.add("selected");
          if (hadFocus) { var link = fresh.querySelector("a.open"); if (link) link.focus(); }
        });
    }
    function connect() {
      if (source && source.readyState !== 2) return;
      source = new EventSource("/console/events?since=" + encodeURIComponent(since));
      source.addEventListener("changed", function (event) {
        since = event.lastEventId || since;
        var ids = JSON.parse(event.data).ids || [];
        ids.forEach(function (id) { changed[id] = true; refresh(id); });
        count();
      });
      source.onerror = function () {
        if (source.readyState === 2) retryOrSignOut(banner, connect);
      };
    }
    connect();
    // Catch up when the tab regains focus or the network returns.
    window.addEventListener("focus", connect);
    window.addEventListener("online", connect);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) connect(); });
  }
})();
